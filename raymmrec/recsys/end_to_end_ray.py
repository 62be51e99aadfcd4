"""End-to-end training as a Ray Train job: each worker a shard of every batch, the encoder under DeepSpeed.

Every worker draws the same batches (same sampler seed) and trains on its contiguous part of each, its loss
weighted by its share of the rows, so one step of W workers is one step of the whole batch. DeepSpeed averages
the encoder's gradients (ZeRO 0-3); one flat all-reduce averages the backbone's, which the trainer's Adam updates.
Every rank refreshes the cached item features (under ZeRO-3 encoding is a collective); rank 0 evaluates and
broadcasts the metrics, so every rank's TrainingProgress takes the same early-stopping decision.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from raymmrec.config import to_dict
from raymmrec.deepspeed_setup import OptimConfig, build_ds_config
from raymmrec.errors import ConfigError, RaymmrecError
from raymmrec.recsys.checkpoint import BEST
from raymmrec.recsys.end_to_end import EndToEndConfig
from raymmrec.recsys.registry import get_model
from raymmrec.recsys.trainer import TrainerConfig, TrainingProgress, TrainResult, with_model_defaults
from raymmrec.runtime import RayConfig, torch_trainer_settings

DS_DIR = "deepspeed"              # the encoder engine's checkpoint (every rank's shard) inside a Ray checkpoint
PROGRESS_FILE = "progress.pt"     # rank 0: the TrainingProgress, for the driver's TrainResult


def encoder_ds_config(cfg: EndToEndConfig, trainer: TrainerConfig, micro_batch: int, on_gpu: bool) -> dict[str, Any]:
    """Stage 2's DeepSpeed config for the encoder: AdamW at encoder_lr with Adam's defaults, no warm-up schedule."""
    if cfg.deepspeed.grad_accum != 1:
        raise ConfigError(f"end_to_end.deepspeed.grad_accum must be 1 (the backbone steps every batch), "
                          f"got {cfg.deepspeed.grad_accum}")
    optim = OptimConfig(lr=cfg.encoder_lr, weight_decay=trainer.weight_decay, betas=[0.9, 0.999], eps=1e-8)
    ds = build_ds_config(cfg.deepspeed, optim, micro_batch, 1, on_gpu)
    if "scheduler" not in cfg.deepspeed.extra:
        # the trainer's per-epoch factor sets the encoder's lr, as it does in the in-process run
        ds.pop("scheduler")
    return ds


def train_end_to_end_ray(model_name: str, model_cfg: Any, trainer_cfg: TrainerConfig, cfg: EndToEndConfig,
                         dataset_dir: str, checkpoint_dir: Path, resume: bool, ray_cfg: RayConfig,
                         run_id: str | None, tracking_uri: str | None,
                         out: Callable[[str], None] = print) -> TrainResult:
    """Run the workers, then copy the best checkpoint into `checkpoint_dir`; returns the run's TrainResult."""
    from ray.train.torch import TorchTrainer

    from raymmrec.runtime import cluster_gpus, init_ray

    if cfg.num_workers < 1:
        raise ConfigError(f"end_to_end.num_workers must be at least 1 for a Ray Train run, got {cfg.num_workers}")
    if trainer_cfg.mirror_gradient:
        raise ConfigError("trainer.mirror_gradient is supported by the in-process trainer only, not a Ray Train "
                          "end-to-end run (end_to_end.num_workers >= 1)")
    spec = get_model(model_name)
    # the same trainer settings as train_model: the model's own defaults where the run keeps the global ones
    trainer_cfg = with_model_defaults(spec.model_cls, trainer_cfg)
    encoder_ds_config(cfg, trainer_cfg, trainer_cfg.batch_size, on_gpu=cfg.use_gpu is not False)
    init_ray(ray_cfg)
    use_gpu = cluster_gpus() > 0 if cfg.use_gpu is None else cfg.use_gpu
    storage = cfg.storage_path or str(checkpoint_dir / "ray")
    storage = storage if "://" in storage else str(Path(storage).resolve())
    run_name = checkpoint_dir.name
    if not resume and "://" not in storage:
        shutil.rmtree(Path(storage) / run_name, ignore_errors=True)
    trainer = TorchTrainer(
        ete_worker,
        train_loop_config={"model": spec.name, "model_config": to_dict(spec.make_config(model_cfg)),
                           "trainer": trainer_cfg, "end_to_end": cfg, "data": str(Path(dataset_dir).resolve()),
                           "run_id": run_id, "tracking_uri": tracking_uri},
        **torch_trainer_settings(run_name, storage, cfg.num_workers, use_gpu, cfg.cpus_per_worker, cfg.max_failures),
    )
    out(f"end-to-end on Ray Train: {cfg.num_workers} workers ({'GPU, nccl' if use_gpu else 'CPU, gloo'}), "
        f"encoder under DeepSpeed ZeRO-{cfg.deepspeed.zero_stage}; checkpoints in {storage}/{run_name}")
    result = trainer.fit()
    if result.checkpoint is None:
        raise RaymmrecError(f"end-to-end run '{run_name}' ended without a checkpoint")
    progress = TrainingProgress(trainer_cfg)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    best = None
    with result.checkpoint.as_directory() as d:
        progress.load_state_dict(torch.load(Path(d) / PROGRESS_FILE, weights_only=False))
        if (Path(d) / BEST).is_file():
            best = checkpoint_dir / BEST
            shutil.copyfile(Path(d) / BEST, best)
    return progress.result(spec.name, spec.make_config(model_cfg), checkpoint_dir, best, None)


def ete_worker(args: dict[str, Any]) -> None:
    """Ray Train entry point: build data, model and engine; resume from the last checkpoint; train and report."""
    import ray.train
    import ray.train.torch

    from raymmrec import tracking
    from raymmrec.recsys.end_to_end import BatchEncoder, end_to_end_setup
    from raymmrec.recsys.interaction_data import InteractionData
    from raymmrec.recsys.metrics import evaluate_splits
    from raymmrec.recsys.report import epoch_line
    from raymmrec.recsys.sampling import BPRSampler
    from raymmrec.recsys.trainer import EVAL_SPLITS, adam_optimizer, build_model, epoch_lr_factor, fit_epochs, run_hash
    from raymmrec.deepspeed_setup import compute_dtype, create_engine, select_accelerator
    from raymmrec.runtime import say

    on_gpu = select_accelerator()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg: EndToEndConfig = args["end_to_end"]
    tcfg = dataclasses.replace(args["trainer"], device=str(ray.train.torch.get_device()))
    if tcfg.num_threads > 0:
        torch.set_num_threads(tcfg.num_threads)
    data, wrap = end_to_end_setup(cfg, InteractionData.load(args["data"], None), get_model(args["model"]).model_cls)
    spec, mcfg, model = build_model(args["model"], args["model_config"], tcfg, data, wrap)
    device = model.device
    ds_config = encoder_ds_config(cfg, tcfg, -(-tcfg.batch_size // world), on_gpu)
    model.inputs.pixels = model.inputs.pixels.to(compute_dtype(ds_config))
    engine = create_engine(BatchEncoder(model.encoder, model.inputs), ds_config, tcfg.weight_decay)
    model.use_engine(engine)
    params = list(model.backbone.parameters())
    optimizer = adam_optimizer([{"params": params, "lr": tcfg.lr}], tcfg)
    factor = epoch_lr_factor(tcfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    sampler = BPRSampler(data, tcfg.batch_size, tcfg.seed, model.uses_negatives, device)
    progress = TrainingProgress(tcfg)
    keep = Path(tempfile.mkdtemp(prefix="raymmrec-ete-best-"))   # this worker's best.pt between checkpoints
    # client-state keys DeepSpeed does not use itself (it drops 'optimizer', 'lr_scheduler', ... on load)
    parts = {"backbone": model.backbone, "backbone_optimizer": optimizer, "backbone_scheduler": scheduler,
             "bpr_sampler": sampler}
    if _restore(engine, parts, progress, keep) and rank == 0:
        say(f"resumed after epoch {progress.epoch}")
        if args["run_id"]:
            tracking.log_from_worker(args, {"resumed_at_epoch": progress.epoch}, progress.epoch)
    meta = {"model_name": spec.name, "model_config": to_dict(mcfg), "trainer_config": to_dict(args["trainer"]),
            "config_hash": run_hash(spec.name, mcfg, args["trainer"], data)}
    encoder_lr = 0.0

    def train_epoch(epoch: int) -> float:
        # the optimiser step of this paradigm: the encoder's DeepSpeed engine and the backbone's Adam, on shards
        nonlocal encoder_lr
        encoder_lr = cfg.encoder_lr * factor(epoch - 1)
        for group in engine.optimizer.param_groups:
            group["lr"] = encoder_lr
        return _train_epoch(model, engine, optimizer, params, sampler, rank, world)

    def evaluate() -> Any:
        model.refresh()
        metrics = None
        if rank == 0:
            metrics = evaluate_splits(model.full_scores, data, EVAL_SPLITS, tcfg.topk, tcfg.eval_batch_size, device)
        return _from_rank0(metrics)

    def after_epoch(record: dict[str, Any]) -> None:
        epoch = record["epoch"]
        record["encoder_lr"] = encoder_lr
        if rank == 0:
            say(epoch_line(record, tcfg.valid_metric))
            if args["run_id"]:
                tracking.log_from_worker(args, {k: v for k, v in record.items() if not k.startswith("best/")}, epoch)
        numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not progress.wants_checkpoint(record):
            ray.train.report(numbers)
            return
        with tempfile.TemporaryDirectory(prefix="raymmrec-ete-ckpt-") as tmp:
            engine.save_checkpoint(str(Path(tmp) / DS_DIR), tag=f"epoch{epoch}", client_state={
                **{k: v.state_dict() for k, v in parts.items()}, "progress": progress.state_dict(),
                "torch_rng": torch.get_rng_state()})
            if record["improved"]:
                state = _full_state(model, engine)
                if rank == 0:
                    torch.save({**meta, "epoch": epoch, "model": state, **progress.state_dict()}, keep / BEST)
            if rank == 0:
                if (keep / BEST).is_file():
                    shutil.copyfile(keep / BEST, Path(tmp) / BEST)
                torch.save(progress.state_dict(), Path(tmp) / PROGRESS_FILE)
            ray.train.report(numbers, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    fit_epochs(progress, model, train_epoch, scheduler, optimizer, evaluate, after_epoch)
    shutil.rmtree(keep, ignore_errors=True)


def _train_epoch(model, engine, optimizer, params: list[torch.nn.Parameter], sampler, rank: int, world: int) -> float:
    """One epoch of this rank's shards; the mean whole-batch loss (NaN on every rank at the first non-finite one)."""
    import torch.distributed as dist

    total, n_batches = 0.0, 0
    for batch in sampler.epoch():
        part, weight = batch.shard(rank, world)
        loss = model.loss(part) * weight
        value = loss.detach().reshape(1).clone()
        if world > 1:
            dist.all_reduce(value)
        value = value.item() / world
        if not math.isfinite(value):
            return float("nan")
        engine.backward(loss)
        _average_gradients(params, world)
        engine.step()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total += value
        n_batches += 1
    return total / max(n_batches, 1)


def _average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """The backbone's gradients averaged over ranks in one flat all-reduce (DeepSpeed averages the encoder's)."""
    import torch.distributed as dist

    if world == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        p.grad = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()


def _from_rank0(obj: Any) -> Any:
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _full_state(model, engine) -> dict[str, torch.Tensor]:
    """The whole model's fp32 weights on CPU (under ZeRO-3 the encoder's are gathered: call on every rank)."""
    def snapshot() -> dict[str, torch.Tensor]:
        return {k: (v.detach().float() if v.is_floating_point() else v).cpu().clone()
                for k, v in model.state_dict().items()}

    if engine.zero_optimization_stage() == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.encoder.parameters())):
            return snapshot()
    return snapshot()


def _restore(engine, parts: dict[str, Any], progress: TrainingProgress, keep: Path) -> bool:
    """Load Ray Train's latest checkpoint (after a worker failure, or the same run started again); False if none."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return False
    with ckpt.as_directory() as d:
        _, client = engine.load_checkpoint(str(Path(d) / DS_DIR))
        if (Path(d) / BEST).is_file():
            shutil.copyfile(Path(d) / BEST, keep / BEST)
    for key, part in parts.items():
        part.load_state_dict(client[key])
    torch.set_rng_state(client["torch_rng"])
    progress.load_state_dict(client["progress"])
    return True
