"""The search algorithm and trial scheduler of a model's search, built from SearchConfig."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Literal, get_args

from raymmrec.errors import ConfigError
from raymmrec.tune.space import Algorithm

# asha: promote as trials arrive; sync_halving: a rung waits for every config (see sync_halving.py);
# fifo: every trial runs to its end (the exhaustive baseline)
Scheduler = Literal["asha", "sync_halving", "fifo"]

# Package each optional search algorithm needs, and Ray's class for it.
_OPTIONAL = {"optuna": ("optuna", "ray.tune.search.optuna", "OptunaSearch"),
             "hyperopt": ("hyperopt", "ray.tune.search.hyperopt", "HyperOptSearch")}


@dataclass
class SearchConfig:
    """How each model's hyper-parameters are searched and its trials scheduled (Ray Tune)."""

    algorithm: Algorithm = "grid"          # grid: every `grid` value crossed; random / optuna / hyperopt: sampled
    num_samples: int = 1                   # grid: repeats of the grid; otherwise: trials per model
    scheduler: Scheduler = "asha"
    grace_period: int = 2                  # epochs every trial gets before the first rung
    reduction_factor: float = 3.0          # 1/rf of a rung's trials go on to the next
    # one CPU a trial: a trial trains with one thread, and fewer concurrent trials reuse their actors
    # (one process start per slot instead of per trial) — measured 35 s vs 65 s for the default pipeline's search
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int = 0         # 0: as many as the resources allow
    seed: int = 0                          # sampling seed of the search algorithm
    report_every_s: float = 20.0           # how often the live progress table is printed
    # Tune's actor reuse: a slot's process runs trial after trial. false starts a fresh process (and placement) per
    # trial, which spreads short trials over nodes that join while a search runs, at a process start each.
    reuse_actors: bool = True


def check_search_config(cfg: SearchConfig, max_epochs: int) -> None:
    """One-line errors for values Ray would reject late or silently misuse."""
    if cfg.num_samples < 1:
        raise ConfigError(f"search.num_samples must be at least 1, got {cfg.num_samples}")
    if cfg.scheduler not in get_args(Scheduler):
        raise ConfigError(f"search.scheduler must be {', '.join(get_args(Scheduler))}, got '{cfg.scheduler}'")
    if cfg.scheduler != "fifo":
        if not 1 <= cfg.grace_period <= max_epochs:
            raise ConfigError(f"search.grace_period must be within 1..trainer.epochs ({max_epochs}), got {cfg.grace_period}")
        if cfg.reduction_factor <= 1:
            raise ConfigError(f"search.reduction_factor must be above 1, got {cfg.reduction_factor}")
    if cfg.scheduler == "sync_halving" and cfg.max_concurrent_trials > 0:
        # Paused trials would keep the search algorithm's slots, so it could never add the configs a rung awaits.
        raise ConfigError("search.max_concurrent_trials must be 0 with scheduler=sync_halving (trials paused at a "
                          "rung would hold its slots); set how many run at once with cpus_per_trial / gpus_per_trial")
    if cfg.cpus_per_trial <= 0 or cfg.gpus_per_trial < 0:
        raise ConfigError(f"search.cpus_per_trial must be > 0 and gpus_per_trial >= 0, got "
                          f"{cfg.cpus_per_trial} / {cfg.gpus_per_trial}")
    if cfg.algorithm in _OPTIONAL:
        package = _OPTIONAL[cfg.algorithm][0]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"search.algorithm '{cfg.algorithm}' needs the '{package}' package, which is not "
                              f"installed (pip install {package}); or use algorithm=random / grid")


def make_search_alg(cfg: SearchConfig, metric: str, points: list[dict[str, Any]] | None = None) -> Any:
    """Ray's search algorithm for `cfg.algorithm` (optional packages imported only when asked for), limited to
    `cfg.max_concurrent_trials` running trials when that is set; `points`: the exact configs a random search runs."""
    if cfg.algorithm in _OPTIONAL:
        _, module, cls = _OPTIONAL[cfg.algorithm]
        searcher_cls = getattr(importlib.import_module(module), cls)
        seed_arg = "seed" if cfg.algorithm == "optuna" else "random_state_seed"
        searcher = searcher_cls(metric=metric, mode="max", **{seed_arg: cfg.seed})
        if cfg.max_concurrent_trials > 0:
            from ray.tune.search import ConcurrencyLimiter

            searcher = ConcurrencyLimiter(searcher, max_concurrent=cfg.max_concurrent_trials)
        return searcher
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # Tune ignores TuneConfig.max_concurrent_trials for this generator; it takes its own limit.
    return BasicVariantGenerator(random_state=cfg.seed, max_concurrent=cfg.max_concurrent_trials,
                                 points_to_evaluate=points)


def make_scheduler(cfg: SearchConfig, max_epochs: int, num_trials: int) -> Any:
    """The trial scheduler on the trainer's epoch counter (not Tune's report count, which a resumed trial may
    repeat); `num_trials` is how many configs synchronous halving waits for at its first rung."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if cfg.scheduler == "fifo":
        return FIFOScheduler()
    if cfg.scheduler == "sync_halving":
        from raymmrec.tune.sync_halving import SyncHalvingScheduler

        return SyncHalvingScheduler(max_t=max_epochs, grace_period=cfg.grace_period,
                                    reduction_factor=cfg.reduction_factor, num_trials=num_trials)
    return ASHAScheduler(time_attr="epoch", max_t=max_epochs, grace_period=cfg.grace_period,
                         reduction_factor=cfg.reduction_factor, brackets=1)
