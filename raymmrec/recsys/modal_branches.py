"""Building blocks of the MMRec-style multimodal models: how any set of modalities maps onto MMRec's
visual / textual slots, LightGCN over several item inputs that share one user table (SLMRec's and
MMGCL's modality branches), their InfoNCE, xavier-initialised heads and model-declared weight decay."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.recsys.graphs import lightgcn_propagate

VISUAL, TEXTUAL = "image", "text"


def mmrec_modality_order(names: Iterable[str]) -> list[str]:
    """MMRec's slot order: `image` first (its v_feat), `text` last (its t_feat), any other modality between."""
    names = list(names)
    middle = [n for n in names if n not in (VISUAL, TEXTUAL)]
    return [n for n in (VISUAL,) if n in names] + middle + [n for n in (TEXTUAL,) if n in names]


def shared_user_lightgcn(adj: torch.Tensor, users: torch.Tensor, item_inputs: list[torch.Tensor],
                         n_layers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(users, items) of LightGCN on [users; items_b] for each item input b, propagated side by side in one pass."""
    d = users.shape[1]
    ego = torch.cat([users.repeat(1, len(item_inputs)), torch.cat(item_inputs, dim=1)])
    out = lightgcn_propagate(adj, ego, n_layers)
    n_users = users.shape[0]
    return list(zip(out[:n_users].split(d, dim=1), out[n_users:].split(d, dim=1)))


def apply_weight_decay(module: torch.nn.Module, weight_decay: float) -> None:
    """After every backward add weight_decay·θ to each parameter's gradient: what torch Adam(weight_decay=…)
    does, declared by the model (SLMRec, MMGCL train with 1e-4) instead of the shared trainer config."""
    if weight_decay <= 0:
        return

    def decay(param: torch.Tensor) -> None:
        param.grad.add_(param.detach(), alpha=weight_decay)

    for param in module.parameters():
        param.register_post_accumulate_grad_hook(decay)


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of anchors·positivesᵀ / τ with the diagonal as the target (in-batch negatives)."""
    logits = anchors @ positives.T / temperature
    return F.cross_entropy(logits, torch.arange(len(anchors), device=logits.device))


def xavier_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """nn.Linear with a xavier-uniform weight (the bias keeps PyTorch's default)."""
    layer = nn.Linear(in_dim, out_dim)
    nn.init.xavier_uniform_(layer.weight)
    return layer
