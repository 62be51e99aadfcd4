"""MMGCN as MMRec implements it (ALGORITHMS.md §2.4): one 3-layer mean-aggregation GCN per modality.

Per modality m: x⁰ = nrm([P_m; F_m]); each layer h = LReLU(mean_N(x) W_c), x̂ = LReLU(W_l x + b) + e_id,
x = LReLU(W_g [h; x̂] + b); output the mean of the modalities' x³, score = inner product.
MMRec's quirks kept: three layers whatever `n_layers` says; the ID table e_id and the preference
tables P_m are plain tensors that never train (buffers here), so the λ term shifts the loss value only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.recsys.graphs import bipartite_adjacency, sparse_mm, to_torch_csr
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.losses import stacked_bpr_with_id_reg
from raymmrec.recsys.modal_branches import VISUAL, mmrec_modality_order
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch

N_LAYERS = 3   # MMRec's GCN hard-codes three layers; its yaml n_layers is never read


@dataclass
class MMGCNConfig(ModelConfig):
    """MMGCN hyper-parameters.

    `image` (MMRec's visual slot) enters through Linear(dim → latent_dim); other modalities enter raw,
    as MMRec's text does, unless wider than `raw_max_dim` (then projected too, which keeps the untrained
    n_users × dim preference table small).
    """

    reg_weight: float = 1e-4
    latent_dim: int = 256
    raw_max_dim: int = 1024

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"reg_weight": {"grid": [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]}}


def mean_adjacency(interactions: sp.spmatrix) -> sp.csr_matrix:
    """D⁻¹A over the bidirectional training edges: each node's mean over its neighbours (0 when none)."""
    a = bipartite_adjacency(interactions)
    deg = np.diff(a.indptr).astype(np.float64)
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    return (sp.diags(inv.astype(np.float32)) @ a).tocsr()


class ModalityGCN(nn.Module):
    """MMGCN's GCN of one modality: concatenation combiner, three layers, untrained P_m."""

    def __init__(self, n_users: int, features: torch.Tensor, dim: int, latent_dim: int | None) -> None:
        super().__init__()
        in_dim = latent_dim or features.shape[1]
        self.register_buffer("features", features, persistent=False)
        self.projection = nn.Linear(features.shape[1], latent_dim) if latent_dim else None
        self.register_buffer("preference", nn.init.xavier_normal_(torch.rand(n_users, in_dim)))
        dims = [in_dim, dim, dim]
        self.conv = nn.ParameterList([nn.Parameter(nn.init.xavier_normal_(torch.empty(d, d))) for d in dims])
        self.linear = nn.ModuleList([nn.Linear(d, dim) for d in dims])
        self.combine = nn.ModuleList([nn.Linear(d + dim, dim) for d in dims])
        for layer in self.linear:
            nn.init.xavier_normal_(layer.weight)
        nn.init.xavier_normal_(self.combine[0].weight)   # MMRec re-initialises only the first combiner

    def forward(self, adj: torch.Tensor, adj_t: torch.Tensor, id_embedding: torch.Tensor) -> torch.Tensor:
        items = self.projection(self.features) if self.projection is not None else self.features
        x = F.normalize(torch.cat([self.preference, items]))
        for conv, linear, combine in zip(self.conv, self.linear, self.combine):
            h = F.leaky_relu(sparse_mm(adj, x @ conv, adj_t))
            x_hat = F.leaky_relu(linear(x)) + id_embedding
            x = F.leaky_relu(combine(torch.cat([h, x_hat], dim=1)))
        return x


@register_model("mmgcn")
class MMGCN(Backbone):
    """Modality-specific message passing with an (untrained) ID embedding added in every layer."""

    Config = MMGCNConfig
    # MMRec's lr grid: a trainer field, tuned alongside the config's own space.
    trainer_search_space: ClassVar[dict[str, dict[str, list]]] = {"lr": {"grid": [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]}}
    needs_features = True

    def __init__(self, config: MMGCNConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        self.modalities = mmrec_modality_order(data.features)
        self.register_buffer("id_embedding", nn.init.xavier_normal_(torch.rand(self.n_users + self.n_items, d)))
        self.gcns = nn.ModuleDict()
        for m in self.modalities:
            feats = torch.from_numpy(data.features[m])
            projected = m == VISUAL or feats.shape[1] > config.raw_max_dim
            self.gcns[m] = ModalityGCN(self.n_users, feats, d, config.latent_dim if projected else None)
        adj = mean_adjacency(data.train)
        self.register_buffer("adj", to_torch_csr(adj), persistent=False)
        self.register_buffer("adj_t", to_torch_csr(adj.T.tocsr()), persistent=False)

    def set_item_features(self, features: dict[str, torch.Tensor]) -> None:
        for m in self.modalities:
            self.gcns[m].features = features[m]

    def _representation(self) -> torch.Tensor:
        out = sum(gcn(self.adj, self.adj_t, self.id_embedding) for gcn in self.gcns.values())
        return out / len(self.gcns)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        # MMRec scores with the representation of the last training batch (one Adam step stale);
        # recomputing it here uses the current weights, so a reloaded checkpoint evaluates the same.
        rep = self._representation()
        return rep[: self.n_users], rep[self.n_users:]

    def loss(self, batch: Batch) -> torch.Tensor:
        loss, reg = stacked_bpr_with_id_reg(self._representation(), self.id_embedding, batch, self.n_users)
        if VISUAL in self.gcns:
            reg = reg + self.gcns[VISUAL].preference.pow(2).mean()
        return loss + self.config.reg_weight * reg
