"""ASHA and synchronous halving against the exhaustive grid MMRec would run: same model, space, data, max epochs.

    python bench/tune_efficiency.py [model=lightgcn] [space={n_layers: {grid: [1, 2]}}] [max_epochs=30] [size=baby]

All searches go through `tune_backbones` (the grid with a FIFO scheduler: every config trains until it
finishes or early-stops, as MMRec's grid does; then `search.scheduler=asha` and `=sync_halving`). Reported: the test Recall@20 each search ends with (at the
best valid epoch of its best-valid trial), the trial-epochs each spent, and wall time under this machine's load.

A trial's curve depends only on its config (the trainer is seeded), so the grid's recorded curves are what
ASHA would see in any order. The replay table runs Ray's own ASHAScheduler over them in many random trial
orders and several (grace period, reduction factor) settings: the expected cost and outcome, not one draw.
"""
from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
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
from raymmrec.tune.sync_halving import rung_milestones

Curve = list[tuple[float, float]]      # per epoch: (best valid Recall@20 so far, test Recall@20 at that best epoch)


@dataclass
class TuneEfficiencyConfig:
    """What to compare: one model's grid, searched exhaustively and with ASHA."""

    model: str = "bpr"
    space: dict[str, Any] = field(default_factory=dict)    # empty: the model's own (MMRec's) grid
    size: str = "baby"                                     # generated set (when data is empty)
    data: str = ""
    max_epochs: int = 20
    grace_period: int = 1                                  # ASHA's
    reduction_factor: float = 3.0
    sync_grace_period: int = 2                             # synchronous halving's
    sync_reduction_factor: float = 3.0
    cpus_per_trial: float = 1.0
    max_concurrent_trials: int = 2
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(num_threads=1))
    output: str = "runs/bench/tune_efficiency"
    resume: bool = True                                    # a finished search of the same config is reloaded
    replay_orders: int = 500
    replay_grace: list[int] = field(default_factory=lambda: [1, 2, 3, 5])
    replay_reduction: list[float] = field(default_factory=lambda: [2.0, 3.0, 4.0])
    target_recall_share: float = 0.99                      # a search's test Recall@20 / the grid's, at least
    target_epoch_share: float = 0.25                       # its trial-epochs / the grid's, at most


def _search(cfg: TuneEfficiencyConfig, scheduler: str, data: Any) -> tuple[SearchResult, float]:
    trainer = TrainerConfig(**{**to_dict(cfg.trainer), "epochs": cfg.max_epochs})
    sync = scheduler == "sync_halving"
    # Synchronous halving takes every config at once; cpus_per_trial alone sets how many run together.
    search = SearchConfig(algorithm="grid", scheduler=scheduler,
                          grace_period=cfg.sync_grace_period if sync else cfg.grace_period,
                          reduction_factor=cfg.sync_reduction_factor if sync else cfg.reduction_factor,
                          cpus_per_trial=cfg.cpus_per_trial,
                          max_concurrent_trials=0 if sync else cfg.max_concurrent_trials, report_every_s=60)
    tune_cfg = TuneBackbonesConfig(models=[cfg.model], spaces={cfg.model: cfg.space} if cfg.space else {},
                                   search=search, trainer=trainer, name=f"{cfg.model}-{scheduler}",
                                   output=cfg.output, resume=cfg.resume,
                                   tracking=TrackingConfig(root=str(Path(cfg.output) / "mlflow"), experiment="bench"))
    start = time.perf_counter()
    result = tune_backbones(tune_cfg, data=data)
    return result, time.perf_counter() - start


def _row(name: str, result: SearchResult, seconds: float, grid_epochs: int) -> dict[str, Any]:
    best = result.best_model
    return {"search": name, "trials": len(result.trials), "trial_epochs": result.trial_epochs,
            "epoch_share": f"{result.trial_epochs / grid_epochs:.1%}",
            "best_config": " ".join(f"{k}={v}" for k, v in sorted(best.config.items())),
            "valid_R@20": best.valid["recall@20"], "test_R@20": best.test["recall@20"],
            "best_test_any_trial": max(r.test.get("recall@20", 0.0) for r in result.trials), "wall_s": round(seconds)}


def grid_curves(result: SearchResult, model: str) -> dict[str, Curve]:
    """Each grid trial's per-epoch (best valid, test at best) Recall@20, read back from its Tune experiment."""
    from ray.tune import ExperimentAnalysis

    frames = ExperimentAnalysis(result.experiment_paths[model]).trial_dataframes
    curves = {}
    for trial_id, frame in frames.items():
        frame = frame.drop_duplicates("epoch", keep="last").sort_values("epoch")
        curves[trial_id] = list(zip(frame["best/valid/recall@20"].astype(float),
                                    frame["best/test/recall@20"].astype(float)))
    return curves


def replay_asha(curves: dict[str, Curve], max_t: int, grace: int, rf: float, concurrency: int,
                orders: int, seed: int = 0) -> dict[str, float]:
    """Ray's ASHAScheduler over recorded curves: mean trial-epochs and test Recall@20 of the best-valid trial."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    rng = random.Random(seed)
    spent_all, test_all = [], []
    for _ in range(orders):
        queue = rng.sample(sorted(curves), len(curves))
        sched = ASHAScheduler(time_attr="epoch", metric="m", mode="max", max_t=max_t, grace_period=grace,
                              reduction_factor=rf, brackets=1)
        running: list[list] = []
        final: dict[str, tuple[float, float]] = {}
        spent = 0
        while queue or running:
            while queue and len(running) < concurrency:
                trial = SimpleNamespace(trial_id=queue.pop(0))
                sched.on_trial_add(None, trial)
                running.append([trial, 0])
            for item in list(running):   # running trials advance one epoch each, in turn
                trial, epoch = item[0], item[1] + 1
                item[1] = epoch
                spent += 1
                final[trial.trial_id] = curves[trial.trial_id][epoch - 1]
                result = {"epoch": epoch, "m": final[trial.trial_id][0]}
                if (sched.on_trial_result(None, trial, result) == TrialScheduler.STOP
                        or epoch >= len(curves[trial.trial_id])):
                    sched.on_trial_complete(None, trial, result)
                    running.remove(item)
        spent_all.append(spent)
        test_all.append(max(final.values())[1])
    return {"trial_epochs": sum(spent_all) / orders, "test_R@20": sum(test_all) / orders, "tests": test_all}


def replay_sync_halving(curves: dict[str, Curve], max_t: int, grace: int, rf: float) -> dict[str, float]:
    """Synchronous successive halving over recorded curves, at the scheduler's rungs: every config to the first,
    the best 1/rf (by best valid so far) on to the next, … the last ones to max_t; trial-epochs and the test."""
    budget = {t: 0 for t in curves}
    alive = sorted(curves)
    for rung in rung_milestones(max_t, grace, rf):
        for t in alive:
            budget[t] = min(rung, len(curves[t]))      # a trial the grid saw early-stop ends there
        if len(alive) == 1:
            break
        alive = sorted(alive, key=lambda t: curves[t][budget[t] - 1][0], reverse=True)[:math.ceil(len(alive) / rf)]
    for t in alive:
        budget[t] = min(max_t, len(curves[t]))
    chosen = max(curves, key=lambda t: curves[t][budget[t] - 1][0])
    return {"trial_epochs": sum(budget.values()), "test_R@20": curves[chosen][budget[chosen] - 1][1]}


def replay_table(cfg: TuneEfficiencyConfig, curves: dict[str, Curve], grid_epochs: int,
                 grid_test: float) -> list[dict[str, Any]]:
    """The replay over every (grace, reduction factor) setting: mean cost and outcome, share of orders on target."""
    rows = []
    for grace in cfg.replay_grace:
        for rf in cfg.replay_reduction:
            got = replay_asha(curves, cfg.max_epochs, grace, rf, cfg.max_concurrent_trials, cfg.replay_orders)
            close = sum(t >= cfg.target_recall_share * grid_test for t in got["tests"]) / cfg.replay_orders
            rows.append({"grace": grace, "rf": f"{rf:g}", "epoch_share": f"{got['trial_epochs'] / grid_epochs:.1%}",
                         "test_R@20_share": f"{got['test_R@20'] / grid_test:.1%}",
                         f"orders_within_{1 - cfg.target_recall_share:.0%}": f"{close:.0%}"})
    return rows


def sync_halving_table(cfg: TuneEfficiencyConfig, curves: dict[str, Curve], grid_epochs: int,
                       grid_test: float) -> list[dict[str, Any]]:
    """Synchronous halving over the same settings (one outcome each: it does not depend on trial order)."""
    rows = []
    for grace in cfg.replay_grace:
        for rf in cfg.replay_reduction:
            got = replay_sync_halving(curves, cfg.max_epochs, grace, rf)
            rows.append({"grace": grace, "rf": f"{rf:g}", "epoch_share": f"{got['trial_epochs'] / grid_epochs:.1%}",
                         "test_R@20_share": f"{got['test_R@20'] / grid_test:.1%}"})
    return rows


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    cfg = load_config(TuneEfficiencyConfig, sys.argv[1:] if argv is None else argv)
    space = model_space(cfg.model, cfg.space or None)
    data = load_training_data(TrainBackboneConfig(data=cfg.data, synth_size=cfg.size, output=cfg.output))
    s = data.summary()
    header = (f"{cfg.model} on {s['name']} ({s['n_users']} users x {s['n_items']} items, {s['n_train']} train), "
              f"grid of {expected_trials(space, 'grid', 1)} configs {json.dumps(space)}, <= {cfg.max_epochs} epochs, "
              f"{cfg.max_concurrent_trials} trials at a time x {cfg.cpus_per_trial} CPU")
    print(header)
    grid, grid_s = _search(cfg, "fifo", data)
    asha, asha_s = _search(cfg, "asha", data)
    sync, sync_s = _search(cfg, "sync_halving", data)
    rows = [_row("grid (fifo)", grid, grid_s, grid.trial_epochs), _row("asha", asha, asha_s, grid.trial_epochs),
            _row("sync_halving", sync, sync_s, grid.trial_epochs)]
    verdicts = {}
    for row, result in ((rows[1], asha), (rows[2], sync)):
        recall_share, epoch_share = row["test_R@20"] / rows[0]["test_R@20"], result.trial_epochs / grid.trial_epochs
        row["test_share"] = f"{recall_share:.1%}"
        verdicts[row["search"]] = {"recall_share": recall_share, "epoch_share": epoch_share,
                                   "target_met": recall_share >= cfg.target_recall_share
                                   and epoch_share <= cfg.target_epoch_share}
    curves = grid_curves(grid, cfg.model)
    replay = replay_table(cfg, curves, grid.trial_epochs, rows[0]["test_R@20"])
    sync_replay = sync_halving_table(cfg, curves, grid.trial_epochs, rows[0]["test_R@20"])
    print("\n" + header + "\n\n" + format_table(rows))
    settings = {"asha": (cfg.grace_period, cfg.reduction_factor),
                "sync_halving": (cfg.sync_grace_period, cfg.sync_reduction_factor)}
    for name, v in verdicts.items():
        grace, rf = settings[name]
        print(f"\n{name} (grace {grace}, reduction factor {rf:g}): {v['recall_share']:.1%} of the grid's test "
              f"Recall@20 with {v['epoch_share']:.1%} of its trial-epochs (target: >= {cfg.target_recall_share:.0%} "
              f"with <= {cfg.target_epoch_share:.0%}): {'met' if v['target_met'] else 'NOT met'}")
    print(f"\nReplay of Ray's ASHAScheduler on the grid's curves, {cfg.replay_orders} random trial orders, "
          f"{cfg.max_concurrent_trials} at a time:\n" + format_table(replay))
    print("\nSynchronous successive halving on the same curves (a rung waits for every config; no trial order):\n"
          + format_table(sync_replay))
    out = Path(cfg.output) / f"{cfg.model}-efficiency.json"
    out.write_text(json.dumps({"config": to_dict(cfg), "data": s, "rows": rows, "verdicts": verdicts,
                               "replay": replay, "sync_halving_replay": sync_replay}, indent=1, default=str))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
