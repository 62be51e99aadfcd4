"""Ray start-up shared by every job: local on a laptop, `address` (or RAY_ADDRESS) on a cluster."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
import sys
from typing import Any


@dataclass
class RayConfig:
    """How a job joins Ray. Empty `address` starts (or reuses) a local instance unless RAY_ADDRESS is set."""

    address: str = ""
    num_cpus: int | None = None          # local instance only; None = all cores
    num_gpus: int | None = None
    object_store_mb: int | None = None   # local instance only; None = Ray's default share of RAM
    data_no_progress_timeout_s: float = 300.0
    env_vars: dict[str, str] = field(default_factory=dict)


# Workers need these as the driver has them (DeepSpeed's accelerator choice, MLflow store, tokenizer threads).
_FORWARDED_ENV = ("DS_ACCELERATOR", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "TOKENIZERS_PARALLELISM",
                  "RAYMMREC_PARENT_RUN_ID", "HF_HUB_OFFLINE")


def init_ray(cfg: RayConfig | None = None) -> None:
    """Start or join Ray once per process, with a data pipeline that fails instead of hanging when starved."""
    import ray
    from ray.data import DataContext

    cfg = cfg or RayConfig()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not ray.is_initialized():
        env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
        env.update(cfg.env_vars)
        kwargs: dict = {"runtime_env": {"env_vars": env}, "log_to_driver": True,
                        "ignore_reinit_error": True, "include_dashboard": False}
        address = cfg.address or os.environ.get("RAY_ADDRESS", "")
        if address:
            kwargs.pop("include_dashboard")
            # Under `ray job submit` the job's runtime env already carries the environment to every worker,
            # and Ray refuses to merge a second one that sets the same variables.
            kwargs["runtime_env"] = {"env_vars": dict(cfg.env_vars)} if cfg.env_vars else None
            ray.init(address=address, **kwargs)
        else:
            if cfg.num_cpus is not None:
                kwargs["num_cpus"] = cfg.num_cpus
            if cfg.num_gpus is not None:
                kwargs["num_gpus"] = cfg.num_gpus
            if cfg.object_store_mb is not None:
                kwargs["object_store_memory"] = cfg.object_store_mb * 1024 * 1024
            # "local": a private instance, even when `ray start` left a cluster on this machine (plain init
            # would join that one and refuse num_cpus)
            ray.init(address="local", **kwargs)
    ctx = DataContext.get_current()
    ctx.execution_options.verbose_progress = False
    if hasattr(ctx, "execution_no_progress_timeout_s"):
        ctx.execution_no_progress_timeout_s = cfg.data_no_progress_timeout_s


def cluster_cpus() -> float:
    """CPUs Ray sees in the cluster."""
    import ray

    return float(ray.cluster_resources().get("CPU", 1.0))


def cluster_gpus() -> float:
    """GPUs Ray sees in the cluster."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def torch_trainer_settings(name: str, storage: str, num_workers: int, use_gpu: bool, cpus_per_worker: float,
                           max_failures: int, placement_strategy: str = "PACK") -> dict[str, Any]:
    """TorchTrainer's scaling, backend and run configs: NCCL on GPU, gloo on CPU, restarts, two checkpoints kept."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig

    return {"scaling_config": ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                            resources_per_worker={"CPU": cpus_per_worker},
                                            placement_strategy=placement_strategy),
            "torch_config": TorchConfig(backend="nccl" if use_gpu else "gloo"),
            "run_config": RunConfig(name=name, storage_path=storage,
                                    failure_config=FailureConfig(max_failures=max_failures),
                                    checkpoint_config=CheckpointConfig(num_to_keep=2))}


def say(line: str) -> None:
    """Print one progress line from a Ray Train worker."""
    # Ray Train patches print() into its logger, which reaches the driver twice; raw stdout arrives once
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
