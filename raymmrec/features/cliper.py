"""CLIPER's similarity measurement (Eq. 2) and fusion layer (SUM / CONCAT / MLP / SA) over per-view text embeddings."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

Fusion = Literal["sa", "sum", "concat", "mlp"]
FUSIONS: tuple[str, ...] = ("sa", "sum", "concat", "mlp")


def view_similarities(views: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Cosine similarity of every view embedding `[N, C, D]` with its item's image embedding `[N, D]` → `[N, C]`."""
    v = views / np.maximum(np.linalg.norm(views, axis=-1, keepdims=True), 1e-12)
    i = image / np.maximum(np.linalg.norm(image, axis=-1, keepdims=True), 1e-12)
    return np.einsum("ncd,nd->nc", v, i).astype(np.float32)


def view_weights(sims: np.ndarray, present: np.ndarray, tau: float, image_ok: np.ndarray | None = None) -> np.ndarray:
    """Eq. 2: softmax of sim / tau over the views present; items without an image weigh their views equally.

    Missing views get weight 0 (dropped from the softmax); an item with no view gets all zeros.
    """
    if tau <= 0:
        raise ValueError(f"CLIPER temperature must be > 0, got {tau}")
    present = present.astype(bool)
    logits = np.where(present, sims.astype(np.float64) / tau, -np.inf)
    if image_ok is not None:
        # no image, no similarity: the softmax of equal logits is the mean of the views present
        logits = np.where(image_ok[:, None] | ~present, logits, 0.0)
    top = np.max(np.where(present, logits, -np.inf), axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.where(present, np.exp(logits - top), 0.0)
    total = e.sum(axis=1, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0).astype(np.float32)


def fusion_dim(fusion: str, n_views: int, dim: int) -> int:
    """Output width of a fusion: C·D for CONCAT, D for the others."""
    check_fusion(fusion)
    return n_views * dim if fusion == "concat" else dim


def check_fusion(fusion: str) -> None:
    if fusion not in FUSIONS:
        raise ValueError(f"CLIPER fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")


def fusion_mlp(n_views: int, dim: int, seed: int) -> nn.Module:
    """The MLP fusion: one Linear(C·D → D) + LeakyReLU, seeded. Like CLIPER's code it is not trained here
    (features are fixed before any backbone runs), so the seed makes it reproducible across blocks and runs."""
    gen = torch.Generator().manual_seed(seed)
    layer = nn.Linear(n_views * dim, dim)
    bound = 1.0 / np.sqrt(n_views * dim)    # torch's default Linear init, drawn from our generator
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=gen)
        layer.bias.uniform_(-bound, bound, generator=gen)
    return nn.Sequential(layer, nn.LeakyReLU())


def fuse_views(views: np.ndarray, weights: np.ndarray, present: np.ndarray, fusion: str,
               mlp: nn.Module | None = None) -> np.ndarray:
    """The fused text feature of each item from its view embeddings `[N, C, D]` (missing views count as zero)."""
    check_fusion(fusion)
    v = np.where(present[..., None].astype(bool), views, 0.0).astype(np.float32)
    if fusion == "sa":
        return np.einsum("ncd,nc->nd", v, weights).astype(np.float32)
    if fusion == "sum":
        return v.sum(axis=1).astype(np.float32)
    flat = v.reshape(v.shape[0], -1)
    if fusion == "concat":
        return flat
    if mlp is None:
        raise ValueError("the MLP fusion needs its module (fusion_mlp)")
    with torch.no_grad():
        return mlp(torch.from_numpy(flat)).numpy().astype(np.float32)
