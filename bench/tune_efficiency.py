"""ASHA against the exhaustive grid MMRec would run: same model, space, data and max epochs.

    python bench/tune_efficiency.py [model=lightgcn] [space={n_layers: {grid: [1, 2]}}] [max_epochs=30] [size=baby]

Both searches go through `tune_backbones` (the grid with a FIFO scheduler: every config trains until it
finishes or early-stops, as MMRec's grid does). Reported: the test Recall@20 each search ends with (at the
best valid epoch of its best-valid trial), the trial-epochs each spent, and wall time under this machine's load.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raymmrec.config import load_config, to_dict
from raymmrec.errors import exit_on_user_error
from raymmrec.recsys.report import format_table
from raymmrec.recsys.train_backbone import TrainBackboneConfig, load_training_data
from raymmrec.recsys.trainer import TrainerConfig
from raymmrec.tracking import TrackingConfig
from raymmrec.tune.algorithms import SearchConfig
from raymmrec.tune.search import SearchResult, TuneBackbonesConfig, tune_backbones
from raymmrec.tune.space import expected_trials, model_space


@dataclass
class TuneEfficiencyConfig:
    """What to compare: one model's grid, searched exhaustively and with ASHA."""

    model: str = "bpr"
    space: dict[str, Any] = field(default_factory=dict)    # empty: the model's own (MMRec's) grid
    size: str = "baby"                                     # generated set (when data is empty)
    data: str = ""
    max_epochs: int = 20
    grace_period: int = 1
    reduction_factor: float = 3.0
    cpus_per_trial: float = 1.0
    max_concurrent_trials: int = 2
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(num_threads=1))
    output: str = "runs/bench/tune_efficiency"
    target_recall_share: float = 0.99                      # ASHA's test Recall@20 / the grid's, at least
    target_epoch_share: float = 0.25                       # ASHA's trial-epochs / the grid's, at most


def _search(cfg: TuneEfficiencyConfig, scheduler: str, data: Any) -> tuple[SearchResult, float]:
    trainer = TrainerConfig(**{**to_dict(cfg.trainer), "epochs": cfg.max_epochs})
    search = SearchConfig(algorithm="grid", scheduler=scheduler, grace_period=cfg.grace_period,
                          reduction_factor=cfg.reduction_factor, cpus_per_trial=cfg.cpus_per_trial,
                          max_concurrent_trials=cfg.max_concurrent_trials, report_every_s=60)
    tune_cfg = TuneBackbonesConfig(models=[cfg.model], spaces={cfg.model: cfg.space} if cfg.space else {},
                                   search=search, trainer=trainer, name=f"{cfg.model}-{scheduler}",
                                   output=cfg.output, resume=False,
                                   tracking=TrackingConfig(root=str(Path(cfg.output) / "mlflow"), experiment="bench"))
    start = time.perf_counter()
    result = tune_backbones(tune_cfg, data=data)
    return result, time.perf_counter() - start


def _row(name: str, result: SearchResult, seconds: float, grid_epochs: int) -> dict[str, Any]:
    best = result.best_model
    return {"search": name, "trials": len(result.trials), "trial_epochs": result.trial_epochs,
            "epoch_share": f"{result.trial_epochs / grid_epochs:.1%}", "best_config": " ".join(
                f"{k}={v}" for k, v in sorted(best.config.items())),
            "valid_R@20": best.valid["recall@20"], "test_R@20": best.test["recall@20"],
            "best_test_any_trial": max(r.test.get("recall@20", 0.0) for r in result.trials), "wall_s": round(seconds)}


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    cfg = load_config(TuneEfficiencyConfig, sys.argv[1:] if argv is None else argv)
    space = model_space(cfg.model, cfg.space or None)
    data = load_training_data(TrainBackboneConfig(data=cfg.data, synth_size=cfg.size, output=cfg.output))
    s = data.summary()
    print(f"{cfg.model} on {s['name']} ({s['n_users']} users x {s['n_items']} items, {s['n_train']} train), "
          f"grid of {expected_trials(space, 'grid', 1)} configs {json.dumps(space)}, <= {cfg.max_epochs} epochs, "
          f"{cfg.max_concurrent_trials} trials at a time x {cfg.cpus_per_trial} CPU")
    grid, grid_s = _search(cfg, "fifo", data)
    asha, asha_s = _search(cfg, "asha", data)
    rows = [_row("grid (fifo)", grid, grid_s, grid.trial_epochs), _row("asha", asha, asha_s, grid.trial_epochs)]
    recall_share = rows[1]["test_R@20"] / rows[0]["test_R@20"]
    epoch_share = asha.trial_epochs / grid.trial_epochs
    print("\n" + format_table(rows))
    met = recall_share >= cfg.target_recall_share and epoch_share <= cfg.target_epoch_share
    print(f"\nASHA: {recall_share:.1%} of the grid's test Recall@20 with {epoch_share:.1%} of its trial-epochs "
          f"(target: >= {cfg.target_recall_share:.0%} with <= {cfg.target_epoch_share:.0%}): {'met' if met else 'NOT met'}")
    out = Path(cfg.output) / f"{cfg.model}-efficiency.json"
    out.write_text(json.dumps({"config": to_dict(cfg), "data": s, "rows": rows, "recall_share": recall_share,
                               "epoch_share": epoch_share, "target_met": met}, indent=1, default=str))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
