"""Stage 2: pre-train or fine-tune an encoder on image–text pairs with Ray Train + DeepSpeed; write the encoder dir."""
from __future__ import annotations

import copy
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from raymmrec import tracking
from raymmrec.config import config_hash, flatten, to_dict
from raymmrec.deepspeed_setup import DeepSpeedConfig, OptimConfig, build_ds_config, consolidated_state_dict
from raymmrec.default_dataset import default_dataset_dir
from raymmrec.encoders import Beit3Config, ClipConfig, EncoderConfig, create_encoder, create_preprocess, save_encoder
from raymmrec.errors import ConfigError, RaymmrecError
from raymmrec.pretrain.objectives import LossConfig, objective_parts
from raymmrec.pretrain.pairs import (MaskSpec, PairDataConfig, create_drop_counter, detect_format, pair_dataset,
                                     source_rows)
from raymmrec.runtime import PLACEMENT_STRATEGIES, RayConfig, init_ray, torch_trainer_settings
from raymmrec.tracking import TrackingConfig


@dataclass
class PretrainConfig:
    """Everything stage 2 needs; `encoder` picks the `beit3` or `clip` section."""

    encoder: Literal["beit3", "clip"] = "beit3"
    objective: Literal["mlm_mim", "itc", "itc_mlm_mim"] = "mlm_mim"
    beit3: Beit3Config = field(default_factory=Beit3Config)
    clip: ClipConfig = field(default_factory=ClipConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    data: PairDataConfig = field(default_factory=PairDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    max_steps: int = 60
    log_every: int = 5
    checkpoint_every: int = 20
    num_workers: int = 2
    cpus_per_worker: float = 0.5      # < 1 on small machines so Ray Data keeps a CPU (see notes/ray-stack.md)
    use_gpu: bool | None = None       # None: use GPUs when the cluster has them
    storage_path: str = "runs/pretrain"   # local dir or object-store URI for Ray Train checkpoints
    run_name: str = ""                # '' = pretrain-<config hash>; the same name resumes from its last checkpoint
    resume_from: str = ""             # a checkpoint dir to start from under a new run name
    max_failures: int = 2
    placement_strategy: str = "PACK"  # SPREAD: workers on different nodes where the cluster allows (PACK | SPREAD |
                                      # STRICT_PACK | STRICT_SPREAD, Ray's placement-group strategies)
    output_dir: str = ""              # '' = <storage_path>/<run_name>/encoder
    log_weights: bool = True          # also log encoder.pt to MLflow (large for base / large models)
    seed: int = 0
    synth_size: str = "tiny"          # generated dataset when data.source is ''
    ray: RayConfig = field(default_factory=RayConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def encoder_config(self) -> EncoderConfig:
        """The EncoderConfig this run trains."""
        return EncoderConfig(kind=self.encoder, beit3=self.beit3, clip=self.clip)


@dataclass
class PretrainResult:
    """What stage 2 produced."""

    encoder_dir: Path
    checkpoint: str
    run_id: str | None
    steps: int
    metrics: dict[str, float]
    history: list[dict[str, float]]
    worker_nodes: list[str]           # Ray node id of each rank in the last (re)start, rank order
    undecodable_images: int
    missing_images: int
    seconds: float


AUTO_REPEAT_MAX_ROWS = 20_000   # a set this small is cheap to hold once in the object store


def auto_repeat(cfg: PretrainConfig) -> int:
    """Passes per dataset epoch so that one Ray Data execution covers the whole run (small, known-size sets only)."""
    rows = source_rows(cfg.data.source)
    if not rows or rows > AUTO_REPEAT_MAX_ROWS:
        return 1
    needed = cfg.max_steps * cfg.deepspeed.grad_accum * cfg.data.batch_size * cfg.num_workers
    return max(1, min(-(-needed // rows) + 1, 1000))


def check_config(cfg: PretrainConfig) -> None:
    """Fail before any worker starts: objective vs encoder, data source, DeepSpeed section, counts."""
    uses_itc, uses_ica = objective_parts(cfg.objective)
    if uses_ica and cfg.encoder != "beit3":
        raise ConfigError(f"objective={cfg.objective} needs encoder=beit3 (clip has no fused pass; use objective=itc)")
    for key in ("max_steps", "log_every", "checkpoint_every", "num_workers"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"config key '{key}' must be at least 1, got {getattr(cfg, key)}")
    for key in ("mlm_ratio", "mim_ratio"):
        if not 0.0 < getattr(cfg.losses, key) < 1.0:
            raise ConfigError(f"config key 'losses.{key}' must be in (0, 1), got {getattr(cfg.losses, key)}")
    build_ds_config(cfg.deepspeed, cfg.optim, cfg.data.batch_size, cfg.max_steps, on_gpu=cfg.use_gpu is not False)
    create_preprocess(cfg.encoder_config())
    if cfg.data.source:
        detect_format(cfg.data.source)
    if cfg.placement_strategy not in PLACEMENT_STRATEGIES:
        raise ConfigError(f"config key 'placement_strategy' must be one of {', '.join(PLACEMENT_STRATEGIES)}, "
                          f"got '{cfg.placement_strategy}'")


def run_pretrain(cfg: PretrainConfig) -> PretrainResult:
    """Train with `num_workers` Ray Train workers, consolidate the last checkpoint, write `<output>/encoder.{pt,json}`."""
    from ray.train.torch import TorchTrainer

    from raymmrec.runtime import cluster_gpus
    from raymmrec.pretrain.worker import train_worker

    t0 = time.perf_counter()
    cfg = copy.deepcopy(cfg)    # the source and repeat resolved below are this run's, not the caller's
    check_config(cfg)
    if not cfg.data.source:
        cfg.data.source = str(default_dataset_dir(cfg.tracking.root, cfg.synth_size, cfg.seed))
    if not cfg.data.repeat:
        cfg.data.repeat = auto_repeat(cfg)
    init_ray(cfg.ray)
    use_gpu = cluster_gpus() > 0 if cfg.use_gpu is None else cfg.use_gpu
    run_name = cfg.run_name or f"pretrain-{config_hash(cfg)}"
    storage = cfg.storage_path if "://" in cfg.storage_path else str(Path(cfg.storage_path).resolve())
    out_dir = Path(cfg.output_dir) if cfg.output_dir else Path(storage) / run_name / "encoder"
    _, uses_ica = objective_parts(cfg.objective)
    masks = MaskSpec(cfg.losses.mlm_ratio, cfg.losses.mim_ratio) if uses_ica else None
    with tracking.job_run(cfg.tracking, "pretrain", params=flatten(to_dict(cfg)),
                          tags={"stage": "pretrain", "run_name": run_name}):
        run_id = tracking.active_run_id()
        counter_name = f"raymmrec-drops-{uuid.uuid4().hex[:8]}"
        counter = create_drop_counter(counter_name)
        dataset = pair_dataset(cfg.data, cfg.encoder_config(), masks, counter=counter_name)
        trainer = TorchTrainer(
            train_worker,
            train_loop_config={"cfg": cfg, "run_id": run_id, "tracking_uri": tracking.resolve_uri(cfg.tracking)
                               if cfg.tracking.enabled else None,
                               "counter": counter_name, "resume_from": cfg.resume_from},
            **torch_trainer_settings(run_name, storage, cfg.num_workers, use_gpu, cfg.cpus_per_worker,
                                     cfg.max_failures, cfg.placement_strategy),
            datasets={"train": dataset},
            dataset_config=_data_config(cfg.data),
        )
        print(f"pre-training {cfg.encoder} ({cfg.objective}) with {cfg.num_workers} workers, "
              f"ZeRO-{cfg.deepspeed.zero_stage}, {cfg.max_steps} steps; checkpoints in {storage}/{run_name}",
              flush=True)
        result = trainer.fit()
        if result.checkpoint is None:
            raise RaymmrecError(f"pre-training run '{run_name}' ended without a checkpoint")
        metrics = dict(result.metrics or {})
        worker_nodes = list(metrics.pop("worker_nodes", []))
        tracking.set_tags({"worker_nodes": ",".join(worker_nodes)})
        drops = _final_drops(counter)
        encoder_dir = _write_encoder(cfg, result.checkpoint, out_dir, metrics)
        history = tracking.metric_history(run_id, ["loss", "loss_itc", "loss_mlm", "loss_mim"],
                                          uri=tracking.resolve_uri(cfg.tracking)) if run_id else []
        tracking.log_metrics({f"final_{k}": v for k, v in metrics.items()} | drops)
        tracking.log_artifact(encoder_dir / "encoder.json", "encoder")
        if cfg.log_weights:
            tracking.log_artifact(encoder_dir / "encoder.pt", "encoder")
        if history:
            tracking.log_table(history, "pretrain_history.json")
    return PretrainResult(encoder_dir=encoder_dir, checkpoint=str(result.checkpoint.path), run_id=run_id,
                          steps=int(metrics.get("step", 0)), metrics=metrics, history=history,
                          worker_nodes=worker_nodes,
                          undecodable_images=int(drops.get("undecodable_images", 0)),
                          missing_images=int(drops.get("missing_images", 0)), seconds=time.perf_counter() - t0)


def _data_config(data: PairDataConfig):
    from ray.train import DataConfig

    options = DataConfig.default_ingest_options()
    options.preserve_order = options.preserve_order or data.preserve_order
    return DataConfig(execution_options=options)


def _final_drops(counter: Any) -> dict[str, int]:
    import ray

    totals = ray.get(counter.totals.remote())
    ray.kill(counter)
    return {"undecodable_images": int(totals.get("undecodable_images", 0)),
            "missing_images": int(totals.get("missing_images", 0))}


def _write_encoder(cfg: PretrainConfig, checkpoint: Any, out_dir: Path, metrics: dict[str, float]) -> Path:
    """Consolidate the DeepSpeed checkpoint to fp32 and keep the encoder's part as the stage output."""
    with checkpoint.as_directory() as d:
        state = consolidated_state_dict(d)
    prefix = "encoder."
    enc_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    encoder = create_encoder(cfg.encoder_config(), load_weights=False)
    return save_encoder(encoder, out_dir, enc_state, extra={
        "objective": cfg.objective, "steps": int(metrics.get("step", 0)), "final_loss": metrics.get("loss"),
        "checkpoint": str(checkpoint.path),
    })
