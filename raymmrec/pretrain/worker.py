"""The per-worker pre-training loop Ray Train runs: a DeepSpeed engine fed by this worker's shard of the pairs."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from raymmrec.errors import DataError
from raymmrec.runtime import say

LOSS_PARTS = ("loss", "itc", "mlm", "mim")


@dataclass
class Window:
    """Sums over one logging interval of this worker."""

    start: float = field(default_factory=time.perf_counter)
    wait: float = 0.0
    samples: int = 0
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, parts: dict[str, torch.Tensor], n: int) -> None:
        self.samples += n
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach()) * n

    def global_metrics(self, world: int) -> dict[str, float]:
        """Means over all workers' samples; the data-wait fraction is averaged over workers."""
        import torch.distributed as dist

        elapsed = time.perf_counter() - self.start
        keys = [k for k in LOSS_PARTS if k in self.sums]
        t = torch.tensor([self.sums[k] for k in keys] + [self.samples, self.wait / max(elapsed, 1e-9)],
                         dtype=torch.float64)
        if world > 1 and dist.is_initialized():
            dist.all_reduce(t)
        samples = t[len(keys)].item()
        out = {("loss" if k == "loss" else f"loss_{k}"): t[i].item() / max(samples, 1) for i, k in enumerate(keys)}
        out["samples_per_s"] = samples / max(elapsed, 1e-9)
        out["data_wait_frac"] = t[len(keys) + 1].item() / world
        return out


def _restore(engine, resume_from: str) -> tuple[int, int]:
    """Load the latest Ray Train checkpoint (auto-restore after a failure / same run name) or `resume_from`;
    returns (epoch, batches of that epoch already consumed)."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is None and resume_from:
        ckpt = ray.train.Checkpoint(resume_from)
    if ckpt is None:
        return 0, 0
    with ckpt.as_directory() as d:
        _, client = engine.load_checkpoint(d)
    client = client or {}
    return int(client.get("epoch", 0)), int(client.get("batches_in_epoch", 0))


def _drop_counts(counter: str | None) -> dict[str, float]:
    if not counter:
        return {}
    import ray

    try:
        return {k: float(v) for k, v in ray.get(ray.get_actor(counter).totals.remote(), timeout=10).items()}
    except Exception:  # noqa: BLE001 - counts are diagnostics; never stop training for them
        return {}


def _report(engine, metrics: dict[str, float], step: int, position: tuple[int, int], save: bool) -> None:
    """Report metrics to Ray Train on every rank, with a DeepSpeed checkpoint when `save`."""
    import ray.train

    if not save:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="raymmrec-ckpt-") as tmp:
        engine.save_checkpoint(tmp, tag=f"step{step}",
                               client_state={"epoch": position[0], "batches_in_epoch": position[1]})
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _worker_nodes(world: int) -> list[str]:
    """The Ray node id of every rank, in rank order (where a run's workers landed; a restart may move them)."""
    import ray
    import torch.distributed as dist

    mine = ray.get_runtime_context().get_node_id()
    if world == 1 or not dist.is_initialized():
        return [mine]
    nodes: list[Any] = [None] * world
    dist.all_gather_object(nodes, mine)
    return [str(n) for n in nodes]


def build_engine(cfg: Any, rank: int, world: int, on_gpu: bool):
    """The encoder + objective heads of `cfg` as a DeepSpeed engine; returns (engine, its DeepSpeed config)."""
    from raymmrec.encoders import create_encoder
    from raymmrec.deepspeed_setup import build_ds_config, create_engine
    from raymmrec.pretrain.objectives import PatchTeacher, PretrainModel, objective_parts

    # the same seed everywhere keeps runs reproducible; DeepSpeed also broadcasts rank 0's initial weights
    torch.manual_seed(cfg.seed)
    encoder = create_encoder(cfg.encoder_config())
    _, uses_ica = objective_parts(cfg.objective)
    teacher = PatchTeacher(cfg.losses.teacher, encoder.preprocess) \
        if uses_ica and cfg.losses.mim_target == "teacher" else None
    model = PretrainModel(encoder, cfg.objective, cfg.losses, rank=rank, world_size=world, teacher=teacher)
    ds_config = build_ds_config(cfg.deepspeed, cfg.optim, cfg.data.batch_size, cfg.max_steps, on_gpu)
    engine = create_engine(model, ds_config, cfg.optim.weight_decay)
    if teacher is not None:
        teacher.to(engine.device)
    return engine, ds_config


def train_worker(args: dict[str, Any]) -> None:
    """Ray Train entry point: build the model on this worker, resume if a checkpoint exists, train to max_steps."""
    import ray.train

    from raymmrec import tracking
    from raymmrec.deepspeed_setup import compute_dtype, select_accelerator

    on_gpu = select_accelerator()
    cfg = args["cfg"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    engine, ds_config = build_engine(cfg, rank, world, on_gpu)
    dtype = compute_dtype(ds_config)
    epoch, skip = _restore(engine, args.get("resume_from", ""))
    nodes = _worker_nodes(world)
    step = int(engine.global_steps)
    if rank == 0 and step:
        say(f"resumed at step {step} (epoch {epoch})")
        if args.get("run_id"):
            tracking.log_from_worker(args, {"resumed_at_step": step}, step)
    shard = ray.train.get_dataset_shard("train")
    window = Window()
    while step < cfg.max_steps:
        batches = iter(shard.iter_torch_batches(batch_size=cfg.data.batch_size, drop_last=True,
                                                local_shuffle_buffer_size=cfg.data.shuffle_buffer or None))
        seen = 0
        while step < cfg.max_steps:
            t0 = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                break
            seen += 1
            if skip:
                # resuming mid-epoch: replay the stream up to the checkpoint so no pair is seen twice or lost
                skip -= 1
                continue
            window.wait += time.perf_counter() - t0
            batch = {k: v.to(engine.device, dtype) if v.is_floating_point() else v.to(engine.device)
                     for k, v in batch.items()}
            boundary = engine.is_gradient_accumulation_boundary()
            parts = engine(batch)
            engine.backward(parts["loss"])
            engine.step()
            window.add(parts, len(batch["tokens"]))
            if not boundary:
                continue
            step = int(engine.global_steps)
            save = step % cfg.checkpoint_every == 0 or step >= cfg.max_steps
            if step % cfg.log_every == 0 or save:
                metrics = window.global_metrics(world)
                metrics.update(lr=float(engine.get_lr()[0]), step=step, epoch=epoch)
                if rank == 0:
                    metrics.update(_drop_counts(args.get("counter")))
                    _print_progress(metrics, cfg.max_steps)
                    if args.get("run_id"):
                        tracking.log_from_worker(args, metrics, step)
                _report(engine, {**metrics, "worker_nodes": nodes}, step, (epoch, seen), save)
                window = Window()
        if seen == 0:
            raise DataError(f"worker {rank} got no batch of {cfg.data.batch_size} pairs in epoch {epoch}: "
                            "the dataset has fewer pairs than workers × data.batch_size")
        epoch += 1


def _print_progress(m: dict[str, float], max_steps: int) -> None:
    parts = " ".join(f"{k[5:]} {m[k]:.4f}" for k in ("loss_itc", "loss_mlm", "loss_mim") if k in m)
    say(f"step {int(m['step'])}/{max_steps} epoch {int(m['epoch'])} loss {m['loss']:.4f} ({parts}) "
        f"lr {m['lr']:.2e} {m['samples_per_s']:.1f} pairs/s data-wait {100 * m['data_wait_frac']:.0f}%")
