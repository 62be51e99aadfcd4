"""DRAGON (Zhou et al., ECAI'23) as MMRec implements it: DualGNN's modality GCNs and user–user graph, with the
modalities concatenated instead of summed and a frozen item–item kNN graph on the item side.

Per modality m (MMRec's slot order, image first, text last), as in DualGNN: x_m = nrm([P_m; MLP_m(f_m)]),
rep_m = x_m + Ãx_m + Ã²x_m. Users: [w_{u,1} rep_1 ‖ … ‖ w_{u,M} rep_M] with softmax-initialised trainable
w_u (a lone modality: rep_1); items: [rep_1 ‖ … ‖ rep_M]. Then items += S^L items with S the FREEDOM-style
KNN-bin graph mixed by mm_image_weight, and users += Σ_k ω_uk users[nbr_k] over the epoch's 40 co-users
(top-200 co-occurrence graph, built blockwise and sparse). Loss: −mean log₂ σ(Δ) + λ(Σ_m mean P_m[u]² +
mean w²). MMRec's dropped-edge graphs are built but never read; they are left out here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from raymmrec.recsys.graphs import sparse_mm
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.models.dualgnn import DualGNN, DualGNNConfig
from raymmrec.recsys.models.freedom import modality_weights
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch
from raymmrec.recsys.sparse_item_graphs import register_csr_pair


@dataclass
class DRAGONConfig(DualGNNConfig):
    """DRAGON hyper-parameters (MMRec's DRAGON.yaml; the GCN width is fixed at 64 there)."""

    knn_k: int = 10
    n_mm_layers: int = 1
    mm_image_weight: float = 0.1
    knn_block_rows: int = 2048

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"reg_weight": {"grid": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5]}}


@register_model("dragon")
class DRAGON(DualGNN):
    """Concatenated modality GCNs, an item kNN graph for items and a co-occurrence graph for users."""

    Config = DRAGONConfig
    trainer_search_space: ClassVar[dict[str, dict[str, list]]] = {"lr": {"grid": [0.1, 0.01, 1e-3, 1e-4, 1e-5]}}

    def __init__(self, config: DRAGONConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        weights = modality_weights(self.modalities, config.mm_image_weight)
        mm = sum(w * data.knn_graph(m, config.knn_k, weighted=False, block_rows=config.knn_block_rows)
                 for m, w in weights.items())
        register_csr_pair(self, "mm_adj", mm)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._user_graph()
        reps = [self._modality_rep(m) for m in self.modalities]
        items = torch.cat([r[self.n_users:] for r in reps], dim=1)
        if len(reps) == 1:
            users = reps[0][: self.n_users]
        else:
            # user_weight is n_users × M × 1: one scale per modality slot
            users = torch.cat([r[: self.n_users] * self.user_weight[:, j] for j, r in enumerate(reps)], dim=1)
        h = items
        for _ in range(self.config.n_mm_layers):
            h = sparse_mm(self.mm_adj, h, self.mm_adj_t)
        users = users + sparse_mm(self.user_adj, users, self.user_adj_t)
        return users, items + h

    def loss(self, batch: Batch) -> torch.Tensor:
        users, items = self.final_embeddings()
        u = users[batch.users]
        diff = (u * items[batch.pos_items]).sum(1) - (u * items[batch.neg_items]).sum(1)
        loss = -F.logsigmoid(diff).mean() / math.log(2.0)      # MMRec's log₂
        reg = sum(p[batch.users].pow(2).mean() for p in self.preference.values()) + self.user_weight.pow(2).mean()
        return loss + self.config.reg_weight * reg
