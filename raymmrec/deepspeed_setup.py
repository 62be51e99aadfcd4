"""DeepSpeed engines from a typed config section: ZeRO 0–3, CPU offload, precision, accumulation, clipping, LR schedule."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from raymmrec.config import merge_dicts
from raymmrec.errors import ConfigError


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay (AlignRec pre-trains with AdamW at lr 5e-4)."""

    lr: float = 5e-4
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    warmup_steps: int = 10
    min_lr_ratio: float = 0.01       # final lr = lr * min_lr_ratio


@dataclass
class DeepSpeedConfig:
    """The DeepSpeed section; `extra` is merged last into the generated DeepSpeed JSON for anything else."""

    zero_stage: int = 3
    offload_optimizer: bool = False   # GPU runs: optimizer states in CPU memory
    offload_params: bool = False      # GPU runs, ZeRO-3: parameters in CPU memory
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"   # auto: bf16 (or fp16) on GPU, fp32 on CPU
    grad_accum: int = 1
    grad_clip: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


def select_accelerator() -> bool:
    """Point DeepSpeed at CUDA when this process sees a GPU, else at its CPU accelerator; True when on GPU."""
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        os.environ["DS_ACCELERATOR"] = "cuda"
    else:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    return on_gpu


def resolve_precision(precision: str, on_gpu: bool) -> str:
    """fp32 on CPU; on GPU `auto` means bf16 where supported, else fp16."""
    if not on_gpu:
        if precision in ("bf16", "fp16"):
            raise ConfigError(f"deepspeed.precision={precision} needs a GPU; this worker has none (use auto or fp32)")
        return "fp32"
    if precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return precision


def build_ds_config(ds: DeepSpeedConfig, optim: OptimConfig, micro_batch: int, total_steps: int,
                    on_gpu: bool) -> dict[str, Any]:
    """The DeepSpeed JSON config for one engine."""
    if ds.zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"deepspeed.zero_stage: expected 0, 1, 2 or 3, got {ds.zero_stage}")
    if ds.grad_accum < 1:
        raise ConfigError(f"deepspeed.grad_accum must be at least 1, got {ds.grad_accum}")
    precision = resolve_precision(ds.precision, on_gpu)
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if on_gpu and ds.offload_optimizer and ds.zero_stage > 0:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if on_gpu and ds.offload_params and ds.zero_stage == 3:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": ds.grad_accum,
        "gradient_clipping": ds.grad_clip,
        "steps_per_print": 10 ** 9,     # progress is ours; DeepSpeed's own lines would repeat it per rank
        "wall_clock_breakdown": False,
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW", "params": {
            "lr": optim.lr, "betas": list(optim.betas), "eps": optim.eps, "weight_decay": optim.weight_decay,
            # on CPU, DeepSpeed's own Adam would JIT-compile for ~90 s; torch's AdamW is the same maths
            "torch_adam": not on_gpu,
        }},
        "scheduler": {"type": "WarmupCosineLR", "params": {
            "total_num_steps": max(total_steps, 1), "warmup_num_steps": max(optim.warmup_steps, 1),
            "warmup_min_ratio": 0.0, "cos_min_ratio": optim.min_lr_ratio, "warmup_type": "linear",
        }},
    }
    if precision == "bf16":
        config["bf16"] = {"enabled": True}
    elif precision == "fp16":
        config["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 12}
    return merge_dicts(config, ds.extra)


def compute_dtype(ds_config: dict[str, Any]) -> torch.dtype:
    """The dtype an engine built from `ds_config` computes in (its inputs must match)."""
    if ds_config.get("bf16", {}).get("enabled"):
        return torch.bfloat16
    if ds_config.get("fp16", {}).get("enabled"):
        return torch.float16
    return torch.float32


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: biases, norms, embeddings of positions/tokens and scalars are not decayed."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or "token" in name.rsplit(".", 1)[-1] or "positional" in name or "embed_positions" in name \
            or name.endswith("logit_scale")
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def create_engine(model: nn.Module, ds_config: dict[str, Any], weight_decay: float):
    """A DeepSpeed engine for `model` (reuses the process group Ray Train set up)."""
    import deepspeed

    if ds_config["zero_optimization"]["stage"] == 3 and hasattr(model, "prepare_for_zero3"):
        model.prepare_for_zero3()
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=param_groups(model, weight_decay),
                                           config=ds_config)
    return engine


def consolidated_state_dict(checkpoint_dir: str | Path) -> dict[str, torch.Tensor]:
    """One fp32 state dict from a DeepSpeed checkpoint dir (any ZeRO stage), on CPU with no process group."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    d = Path(checkpoint_dir)
    tag = (d / "latest").read_text().strip()
    if any((d / tag).glob("*zero_pp_rank_*optim_states.pt")):
        return dict(get_fp32_state_dict_from_zero_checkpoint(str(d), tag=tag))
    # ZeRO-0 in fp32: the full module sits in the model-states file, with no partitioned optimizer files
    state = torch.load(d / tag / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
    return {k: v.float() if v.is_floating_point() else v for k, v in state["module"].items()}
