"""The one trainer of every backbone: BPR batches, MMRec's epoch order, early stopping, checkpoints, reports."""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from raymmrec.config import config_hash, to_dict
from raymmrec.errors import ConfigError
from raymmrec.recsys.checkpoint import BEST, load_checkpoint, resumable_state, save_checkpoint
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.metrics import evaluate_splits
from raymmrec.recsys.mirror_gradient import MirrorGradient
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import get_model
from raymmrec.recsys.sampling import BPRSampler

EVAL_SPLITS = ("valid", "test")
ReportFn = Callable[[dict[str, Any]], Any]


# What a TrainerConfig field left at None means when the model has no default of its own (MMRec's overall.yaml).
GLOBAL_DEFAULTS: dict[str, Any] = {"lr_scheduler": [1.0, 50.0], "patience": 20}


@dataclass
class TrainerConfig:
    """How every backbone is trained and evaluated (MMRec's defaults, ALGORITHMS.md §1.4–1.7)."""

    epochs: int = 1000
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.0
    # None on the two fields below: the model's `trainer_defaults`, else GLOBAL_DEFAULTS (an explicit value wins)
    lr_scheduler: list[float] | None = None   # [s0, s1]: lr · s0^(epoch / s1)
    eval_every: int = 1
    patience: int | None = None           # stop when non-improving evaluations exceed this
    valid_metric: str = "recall@20"
    topk: list[int] = field(default_factory=lambda: [10, 20, 50])
    eval_batch_size: int = 4096
    seed: int = 999
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    num_threads: int = 0                  # torch intra-op threads; 0 keeps the process default
    checkpoint_every: int = 1             # write last.pt every N epochs (0: only at best epochs and the end)
    mirror_gradient: bool = False         # Mirror Gradient (MMRec's --mg); see recsys/mirror_gradient.py
    mg_alpha1: float = 1.0
    mg_alpha2: float = 0.1
    mg_beta: int = 3


@dataclass
class TrainResult:
    """What a training run ends with; `model` holds the best-validation weights."""

    model_name: str
    model_config: dict[str, Any]
    history: list[dict[str, Any]]
    best_epoch: int
    best_valid: dict[str, float]
    test_at_best: dict[str, float]
    stop_reason: str                      # early_stopped | finished | nan_loss | stopped_by_report
    epochs_run: int
    seconds: float
    checkpoint_dir: str | None = None
    best_checkpoint: str | None = None
    model: Backbone | None = field(default=None, repr=False, compare=False)

    def summary(self) -> dict[str, Any]:
        """The result without history and model (for logs and Tune)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("history", "model")}


class EarlyStopping:
    """MMRec's rule: an update needs a strictly greater value (initial best −1); stop when the
    count of consecutive non-improving evaluations exceeds `patience`."""

    def __init__(self, patience: int, best: float = -1.0, bad: int = 0) -> None:
        self.patience, self.best, self.bad = patience, best, bad

    def update(self, value: float) -> tuple[bool, bool]:
        """Feed one validation value; returns (improved, should_stop)."""
        if value > self.best:
            self.best, self.bad = value, 0
            return True, False
        self.bad += 1
        return False, self.bad > self.patience


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Re-seed python, numpy and torch (MMRec re-seeds before every run)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _prefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in metrics.items()}


def run_hash(model_name: str, model_cfg: ModelConfig, trainer_cfg: TrainerConfig, data: InteractionData) -> str:
    """Identity of a run for resuming: model, both configs and the data's shape."""
    ident = {"model": model_name, "model_config": to_dict(model_cfg), "trainer": to_dict(trainer_cfg),
             "data": [data.name, data.n_users, data.n_items, data.n_train, data.feature_set]}
    # These do not change what an epoch computes; `epochs` may grow to extend a finished run.
    for k in ("device", "num_threads", "checkpoint_every", "epochs", "eval_batch_size"):
        ident["trainer"].pop(k)
    if not trainer_cfg.mirror_gradient:    # runs without it keep the identity they had before the option existed
        for k in ("mirror_gradient", "mg_alpha1", "mg_alpha2", "mg_beta"):
            ident["trainer"].pop(k)
    return config_hash(ident)


def with_model_defaults(model_cls: type[Backbone], cfg: TrainerConfig) -> TrainerConfig:
    """`cfg` with every field left unset (None) filled by the model's `trainer_defaults`, else GLOBAL_DEFAULTS."""
    wrong = sorted(set(model_cls.trainer_defaults) - set(GLOBAL_DEFAULTS))
    if wrong:
        raise ConfigError(f"model '{model_cls.name}': trainer_defaults may set only {', '.join(GLOBAL_DEFAULTS)} "
                          f"(fields a config leaves unset), not {', '.join(wrong)}")
    unset = {k: copy.deepcopy(model_cls.trainer_defaults.get(k, v)) for k, v in GLOBAL_DEFAULTS.items()
             if getattr(cfg, k) is None}
    if not model_cls.learns:            # nothing changes between epochs: a second one only re-evaluates (MMRec: 1)
        unset["epochs"] = 1
    return replace(cfg, **unset) if unset else cfg


def train_model(model_name: str, model_cfg: ModelConfig | Mapping[str, Any] | None, trainer_cfg: TrainerConfig,
                data: InteractionData | Any, report: ReportFn | None = None,
                checkpoint_dir: str | Path | None = None, resume: bool = True,
                wrap_model: Callable[[Backbone], Backbone] | None = None) -> TrainResult:
    """Train registered model `model_name` on `data` (InteractionData or its Ray ObjectRef).

    After every epoch `report(record)` gets a flat dict: epoch, train_loss, lr, train/eval/seconds,
    `valid/<metric>` and `test/<metric>` (incl. `cold_` ones) when evaluated, best_epoch, best_valid,
    `best/valid/...`, `best/test/...`, improved, should_stop, stop_reason, checkpoint_dir. A report that
    returns True stops training ("stopped_by_report"). With `checkpoint_dir`, last.pt is written every
    epoch and best.pt at each new best; `resume` continues from last.pt of the same config.
    `wrap_model(backbone)` replaces the built backbone by the module trained (end-to-end training wraps it
    with its encoder); the optimizer takes that module's `param_groups(lr)`.
    """
    trainer_cfg = with_model_defaults(get_model(model_name).model_cls, trainer_cfg)
    check_trainer_config(trainer_cfg)
    threads = torch.get_num_threads()
    if trainer_cfg.num_threads > 0:
        torch.set_num_threads(trainer_cfg.num_threads)
    try:
        return _train(model_name, model_cfg, trainer_cfg, InteractionData.resolve(data), report, checkpoint_dir, resume,
                      wrap_model)
    finally:
        torch.set_num_threads(threads)


class TrainingProgress:
    """Where a run stands: epochs done, best epoch and its metrics, early stopping, history, why it stopped."""

    # Both training loops (in-process and Ray Train end-to-end) feed it one epoch at a time: one set of stopping rules.

    def __init__(self, cfg: TrainerConfig) -> None:
        self.cfg = cfg
        self.stopper = EarlyStopping(cfg.patience)
        self.state: dict[str, Any] = {"epoch": 0, "best_epoch": 0, "best_valid": {}, "test_at_best": {}, "history": [],
                                   "stop_reason": None, "seconds": 0.0}

    @property
    def epoch(self) -> int:
        return self.state["epoch"]

    def running(self) -> bool:
        """True while another epoch is due."""
        return self.state["stop_reason"] is None and self.state["epoch"] < self.cfg.epochs

    def evaluates(self, epoch: int, train_loss: float) -> bool:
        """Whether `epoch` ends with an evaluation (never after a non-finite loss)."""
        return math.isfinite(train_loss) and (epoch % self.cfg.eval_every == 0 or epoch == self.cfg.epochs)

    def close_epoch(self, epoch: int, train_loss: float, lr: float, t0: float, t1: float,
                    metrics: Mapping[str, Mapping[str, float]] | None,
                    checkpoint_dir: str | None = None) -> dict[str, Any]:
        """Record one epoch (metrics: evaluate_splits' output or None); returns the report record."""
        st = self.state
        record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "lr": lr, "train_seconds": t1 - t0}
        improved = False
        if not math.isfinite(train_loss):
            st["stop_reason"] = "nan_loss"
        elif metrics is not None:
            record.update(_prefixed("valid", metrics["valid"]))
            record.update(_prefixed("test", metrics["test"]))
            improved, stop = self.stopper.update(metrics["valid"][self.cfg.valid_metric])
            if improved:
                st.update(best_epoch=epoch, best_valid=dict(metrics["valid"]), test_at_best=dict(metrics["test"]))
            if stop:
                st["stop_reason"] = "early_stopped"
        record["eval_seconds"] = time.perf_counter() - t1
        if st["stop_reason"] is None and epoch >= self.cfg.epochs:
            st["stop_reason"] = "finished"
        record.update(best_epoch=st["best_epoch"], best_valid=self.stopper.best, improved=improved)
        record.update(_prefixed("best/valid", st["best_valid"]))
        record.update(_prefixed("best/test", st["test_at_best"]))
        record["seconds"] = time.perf_counter() - t0
        st["epoch"] = epoch
        st["seconds"] += record["seconds"]
        st["history"].append(record)
        record.update(should_stop=st["stop_reason"] is not None, stop_reason=st["stop_reason"],
                      checkpoint_dir=checkpoint_dir)
        return record

    def wants_checkpoint(self, record: Mapping[str, Any]) -> bool:
        """last.pt after this epoch: at a new best, at the end, and every `checkpoint_every` epochs."""
        every = self.cfg.checkpoint_every
        return bool(record["improved"] or self.state["stop_reason"] or (every > 0 and record["epoch"] % every == 0))

    def stop_by_report(self) -> bool:
        """The caller's report asked to stop; True when that changes the outcome."""
        if self.state["stop_reason"] is None:
            self.state["stop_reason"] = "stopped_by_report"
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's `trainer` and `early_stopping` entries."""
        return {"trainer": self.state, "early_stopping": {"best": self.stopper.best, "bad": self.stopper.bad}}

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        """Restore from a checkpoint; a run that ran out of epochs (now more are allowed) or was stopped continues."""
        self.state = copy.deepcopy(saved["trainer"])
        if self.state["stop_reason"] in ("finished", "stopped_by_report") and self.state["epoch"] < self.cfg.epochs:
            self.state["stop_reason"] = None
        self.stopper = EarlyStopping(self.cfg.patience, saved["early_stopping"]["best"], saved["early_stopping"]["bad"])

    def result(self, model_name: str, model_cfg: ModelConfig, checkpoint_dir: Path | None, best: Path | None,
               model: Backbone | None) -> TrainResult:
        """The TrainResult of the run (a resumed run that had already run all its epochs counts as finished)."""
        st = self.state
        if st["stop_reason"] is None:
            st["stop_reason"] = "finished"
        return TrainResult(model_name=model_name, model_config=to_dict(model_cfg), history=st["history"],
                           best_epoch=st["best_epoch"], best_valid=st["best_valid"], test_at_best=st["test_at_best"],
                           stop_reason=st["stop_reason"], epochs_run=st["epoch"], seconds=st["seconds"],
                           checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
                           best_checkpoint=str(best) if best else None, model=model)


def build_model(model_name: str, model_cfg: ModelConfig | Mapping[str, Any] | None, trainer_cfg: TrainerConfig,
                data: InteractionData, wrap_model: Callable[[Backbone], Backbone] | None = None):
    """(spec, config, model on the trainer's device), seeded so every process builds the same initial weights."""
    spec = get_model(model_name)
    cfg = spec.make_config(model_cfg)
    seed_everything(trainer_cfg.seed)
    model = spec.build(cfg, data)
    model = wrap_model(model) if wrap_model is not None else model
    return spec, cfg, model.to(resolve_device(trainer_cfg.device))


def epoch_lr_factor(cfg: TrainerConfig) -> Callable[[int], float]:
    """MMRec's per-epoch learning-rate factor s0^(epoch / s1)."""
    s0, s1 = cfg.lr_scheduler
    return lambda e: s0 ** (e / s1)


def _train(model_name: str, model_cfg: ModelConfig | Mapping[str, Any] | None, trainer_cfg: TrainerConfig,
           data: InteractionData, report: ReportFn | None, checkpoint_dir: str | Path | None,
           resume: bool, wrap_model: Callable[[Backbone], Backbone] | None = None) -> TrainResult:
    spec, cfg, model = build_model(model_name, model_cfg, trainer_cfg, data, wrap_model)
    device = model.device
    optimizer = adam_optimizer(model.param_groups(trainer_cfg.lr), trainer_cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, epoch_lr_factor(trainer_cfg))
    sampler = BPRSampler(data, trainer_cfg.batch_size, trainer_cfg.seed, model.uses_negatives, device)
    mirror = MirrorGradient.from_trainer(trainer_cfg)
    progress = TrainingProgress(trainer_cfg)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else None
    h = run_hash(spec.name, cfg, trainer_cfg, data)
    if ckpt_dir and resume:
        saved = resumable_state(ckpt_dir, h, device)
        if saved is not None:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            sampler.load_state_dict(saved["sampler"])
            torch.set_rng_state(saved["torch_rng"])
            progress.load_state_dict(saved)
    best_state = None

    def checkpoint(best: bool) -> None:
        save_checkpoint({"model_name": spec.name, "model_config": to_dict(cfg), "trainer_config": to_dict(trainer_cfg),
                         "config_hash": h, "epoch": progress.epoch, "model": model.state_dict(),
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "sampler": sampler.state_dict(), "torch_rng": torch.get_rng_state(),
                         **progress.state_dict()}, ckpt_dir, best)

    def evaluate() -> Mapping[str, Mapping[str, float]]:
        return evaluate_splits(model.full_scores, data, EVAL_SPLITS, trainer_cfg.topk, trainer_cfg.eval_batch_size,
                               device)

    def after_epoch(record: dict[str, Any]) -> None:
        nonlocal best_state
        if record["improved"] and ckpt_dir is None:
            best_state = copy.deepcopy(model.state_dict())
        if ckpt_dir is not None and progress.wants_checkpoint(record):
            checkpoint(record["improved"])
        if report is not None and report(dict(record)) is True and progress.stop_by_report() and ckpt_dir:
            checkpoint(False)

    fit_epochs(progress, model, lambda epoch: train_epoch(model, sampler, optimizer, mirror), scheduler, optimizer,
               evaluate, after_epoch, str(ckpt_dir) if ckpt_dir else None)

    best_path = ckpt_dir / BEST if ckpt_dir is not None and (ckpt_dir / BEST).is_file() else None
    if best_path is not None:
        model.load_state_dict(load_checkpoint(best_path, device)["model"])
    elif best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return progress.result(spec.name, cfg, ckpt_dir, best_path, model)


def fit_epochs(progress: TrainingProgress, model: Backbone, train_epoch: Callable[[int], float],
               scheduler: Any, optimizer: torch.optim.Optimizer,
               evaluate: Callable[[], Mapping[str, Mapping[str, float]] | None],
               after_epoch: Callable[[dict[str, Any]], None], checkpoint_dir: str | None = None) -> None:
    """The one epoch loop of every paradigm: train (`train_epoch(epoch)` holds the optimiser step: local Adam, or a
    DeepSpeed engine on Ray workers), step the schedule, evaluate when due, record; `after_epoch` checkpoints and
    reports. Runs until `progress` says stop."""
    while progress.running():
        epoch = progress.epoch + 1
        t0 = time.perf_counter()
        model.train()
        model.pre_epoch(epoch)
        train_loss = train_epoch(epoch)
        scheduler.step()
        t1 = time.perf_counter()
        metrics = None
        if progress.evaluates(epoch, train_loss):
            model.eval()
            metrics = evaluate()
        record = progress.close_epoch(epoch, train_loss, optimizer.param_groups[0]["lr"], t0, t1, metrics,
                                      checkpoint_dir)
        after_epoch(record)


def adam_optimizer(params: list[dict[str, Any]], cfg: TrainerConfig) -> torch.optim.Adam:
    """MMRec's Adam; the fused kernel (same update, one pass over memory) where torch has it for these tensors."""
    try:
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_epoch(model: Backbone, sampler: BPRSampler, optimizer: torch.optim.Optimizer,
                mirror: MirrorGradient | None = None, max_batches: int | None = None) -> float:
    """One pass over the shuffled training batches (the first `max_batches` of them if given); the mean loss,
    or NaN at the first non-finite loss."""
    total, n_batches = 0.0, 0
    for index, batch in enumerate(sampler.epoch()):
        if max_batches is not None and index >= max_batches:
            break
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(batch)
        value = loss.item()
        if not math.isfinite(value):
            return float("nan")
        if mirror is not None and mirror.applies(index):
            if not mirror.step(loss, lambda: model.loss(batch), optimizer):
                return float("nan")
        else:
            loss.backward()
            optimizer.step()
        total += value
        n_batches += 1
    return total / max(n_batches, 1)


def check_trainer_config(cfg: TrainerConfig) -> None:
    """One-line errors for trainer settings no epoch could run with (`cfg` after with_model_defaults)."""
    known = {f"{m}@{k}" for k in cfg.topk for m in ("recall", "ndcg")}
    if cfg.valid_metric not in known:
        raise ConfigError(f"trainer.valid_metric '{cfg.valid_metric}' is not computed (known: {', '.join(sorted(known))})")
    if len(cfg.lr_scheduler) != 2:
        raise ConfigError(f"trainer.lr_scheduler: expected [factor, step], got {cfg.lr_scheduler}")
    for key in ("epochs", "batch_size", "eval_every", "eval_batch_size"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"trainer.{key} must be at least 1, got {getattr(cfg, key)}")


def load_trained_model(checkpoint: str | Path, data: InteractionData | Any,
                       device: str = "cpu") -> Backbone:
    """Rebuild the model saved in a training checkpoint (best.pt / last.pt) on `data`, in eval mode."""
    state = load_checkpoint(checkpoint, resolve_device(device))
    data = InteractionData.resolve(data)
    model = get_model(state["model_name"]).build(state["model_config"], data).to(resolve_device(device))
    weights = state["model"]
    if state.get("paradigm") == "ete":
        # the backbone alone scores items: it reads the features its trained encoder wrote (the checkpoint's set)
        weights = {k[len("backbone."):]: v for k, v in weights.items() if k.startswith("backbone.")}
    model.load_state_dict(weights)
    return model.eval()
