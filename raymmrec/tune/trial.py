"""One Tune trial: train_backbone's trainer on the shared data, reporting every epoch to Tune with its checkpoint."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Mapping

from raymmrec.config import from_dict
from raymmrec.recsys.trainer import TrainerConfig, train_model
from raymmrec.tune.space import FEATURES_KEY, split_params

PRUNED = "pruned"             # stopped by the scheduler (ASHA or synchronous halving)
# Keys of the trainer's epoch record worth a per-epoch MLflow metric besides valid/* and test/*.
EPOCH_KEYS = ("epoch", "train_loss", "lr", "train_seconds", "eval_seconds", "seconds", "best_valid")


def search_metric(valid_metric: str) -> str:
    """The key ASHA and the leaderboard rank by: the best valid value so far (the trainer's model selection)."""
    return f"best/valid/{valid_metric}"


def tune_record(record: Mapping[str, Any], valid_metric: str) -> dict[str, Any]:
    """A trainer epoch record as reported to Tune: no worker-local paths, the search metric always present."""
    out = {k: v for k, v in record.items() if k != "checkpoint_dir"}
    # Before the first evaluation (eval_every > 1, or a NaN loss at epoch 1) the trainer's best is −1.
    out[search_metric(valid_metric)] = max(float(record["best_valid"]), 0.0)
    return out


def epoch_metrics(result: Mapping[str, Any]) -> dict[str, Any]:
    """The per-epoch metrics of a Tune result worth logging (Ray's own bookkeeping left out)."""
    return {k: v for k, v in result.items() if k in EPOCH_KEYS or k.startswith(("valid/", "test/"))}


def final_metrics(result: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics at the best valid epoch and the epochs used, from a trial's last result."""
    out = {k: v for k, v in result.items() if k.startswith("best/")}
    out.update(best_epoch=result.get("best_epoch", 0), epochs_run=result.get("epoch", 0))
    return out


def stop_reason(last_result: Mapping[str, Any] | None) -> str:
    """Why a finished trial ended: the trainer's own reason, else the scheduler pruned it."""
    if not last_result or "epoch" not in last_result:
        return "no_result"
    if last_result.get("should_stop"):
        return str(last_result.get("stop_reason"))
    return PRUNED


def run_trial(config: dict[str, Any], *, data: Any, model: str, fixed: Mapping[str, Any],
              trainer: Mapping[str, Any]) -> None:
    """The Tune trainable: `config` (sampled) over `fixed` params; `data` is the InteractionData ObjectRef, or one
    per feature set label when the search compares sets."""
    import ray
    from ray import tune

    # Ray logs every persisted checkpoint at INFO: one line per epoch per trial.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    if isinstance(data, Mapping):
        data = data[config[FEATURES_KEY]]
    params, trainer_overrides = split_params({**fixed, **config})
    trainer_cfg = from_dict(TrainerConfig, {**trainer, **trainer_overrides}, prefix="trainer.")
    # Train in the trial's own dir (removed with the Ray session), from the checkpoint Tune hands back if any.
    workdir = Path(tune.get_context().get_trial_dir()) / "train"
    shutil.rmtree(workdir, ignore_errors=True)
    restored = tune.get_checkpoint()
    if restored is not None:
        restored.to_directory(str(workdir))
    reported = 0
    # where each epoch ran: on a cluster a trial restored after a node loss continues on another node
    node_id = ray.get_runtime_context().get_node_id()

    def report(record: dict[str, Any]) -> None:
        nonlocal reported
        reported += 1
        tune.report({**tune_record(record, trainer_cfg.valid_metric), "node_id": node_id},
                    checkpoint=tune.Checkpoint.from_directory(str(workdir)))

    result = train_model(model, params, trainer_cfg, data, report=report, checkpoint_dir=workdir, resume=True)
    if not reported and result.history:
        # Restored from the checkpoint of a run that had already ended: give Tune its final record again.
        report(result.history[-1])
