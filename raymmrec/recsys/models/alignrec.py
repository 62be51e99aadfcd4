"""AlignRec (CIKM'24; ALGORITHMS.md §3): unified multimodal feature, content–category and user–item alignment.

Input: one unified item feature (e.g. BEiT3's CLS vector, the paper's setting) or several modalities.
With several, the model input is their concatenation and the similarity behind the kNN graph and the
REG target is the mean of the per-modality cosines (the cosine of the concatenated unit vectors), so no
modality dominates by its dimension; with one modality both reduce exactly to AlignRec's code.
Where code and paper differ, the code is followed (ALGORITHMS.md §7.5); `reg_similarity="cosine"`
gives the paper's Eq. 11.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.recsys.alignment_losses import (cosine_alignment, cosine_info_nce, half_squared_l2,
                                              similarity_regulariser)
from raymmrec.recsys.approximate_knn import KnnMethod
from raymmrec.recsys.embedding_tables import xavier_uniform_table
from raymmrec.recsys.graphs import lightgcn_propagate, sparse_mm
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.losses import bpr_logsigmoid_loss, dot_scores
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch
from raymmrec.recsys.sparse_item_graphs import register_csr_pair, user_item_block


@dataclass
class AlignRecConfig(ModelConfig):
    """AlignRec hyper-parameters (paper Table 7 / ALIGNREC.yaml); α, β, λ weight CCA, UIA and REG."""

    n_ui_layers: int = 2                 # LightGCN layers of the ID aggregator
    n_layers: int = 1                    # propagations on the item–item graph S
    knn_k: int = 10                      # K'
    reg_weight: float = 1e-4             # L2 on the batch's final embeddings (code only)
    cca_weight: float = 0.01             # α (code: cl_loss)
    uia_weight: float = 0.1              # β (code: ui_cosine_loss_weight with --ui_cosine_loss; 0 = off)
    sim_weight: float = 0.1              # λ (code: sim_weight)
    temperature: float = 0.2             # τ of the CCA InfoNCE (hard-coded 0.2 in the code)
    reg_similarity: Literal["dot", "cosine"] = "dot"   # REG's mm-side similarity: code (dot) or paper (cosine)
    use_ln: bool = False                 # LayerNorm on the feature before the MLP (code's --use_ln)
    knn_block_rows: int = 2048
    knn_method: KnnMethod = "exact"       # faiss: approximate neighbours (IVF) for large catalogues

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"cca_weight": {"grid": [1e-4, 1e-3, 5e-3, 1e-2, 1e-1]}, "n_layers": {"grid": [1]},
                "knn_k": {"grid": [10]}, "sim_weight": {"grid": [0.1, 0.2, 0.3, 0.4, 0.5]}}


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm."""
    return F.normalize(x, dim=1)


def fused_knn_graph(data: InteractionData, k: int, block_rows: int = 2048, method: KnnMethod = "exact") -> sp.csr_matrix:
    """KNN-w graph of the (fused) item feature: one modality's own graph, or that of the concatenated unit rows."""
    return data.knn_graph("+".join(data.features), k, weighted=True, block_rows=block_rows, method=method)


@register_model("alignrec")
class AlignRec(Backbone):
    """LightGCN ID branch + content-gated ID embeddings smoothed on the feature kNN graph, three alignments."""

    Config = AlignRecConfig
    needs_features = True
    trainer_defaults: ClassVar[dict[str, Any]] = {"lr_scheduler": [0.96, 50.0], "patience": 30}
    trainer_search_space: ClassVar[dict[str, dict[str, list]]] = {
        "lr": {"grid": [5e-3, 3e-3, 1e-3, 7e-4, 5e-4, 3e-4, 1e-4]}}

    def __init__(self, config: AlignRecConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        self.user_embedding = xavier_uniform_table(self.n_users, d)
        self.item_embedding = xavier_uniform_table(self.n_items, d)
        self.modalities = list(data.features)
        raw = np.concatenate([data.features[m] for m in self.modalities], axis=1)
        # h_enc: a trainable copy (the code's from_pretrained(freeze=False)); graph and REG use the originals.
        self.feature_table = nn.Parameter(torch.from_numpy(raw))
        self.layer_norm = nn.LayerNorm(raw.shape[1]) if config.use_ln else nn.Identity()
        # Eq. 5's "MLP": two affine maps with no nonlinearity between them, then the sigmoid gate.
        self.encoder = nn.Linear(raw.shape[1], d)
        self.gate = nn.Sequential(nn.Linear(d, d), nn.Sigmoid())
        for m in self.modalities:   # frozen originals, shared with the data (no copy)
            self.register_buffer(f"original_{m}", torch.from_numpy(data.features[m]), persistent=False)
        register_csr_pair(self, "item_adj", fused_knn_graph(data, config.knn_k, config.knn_block_rows,
                                                               config.knn_method))
        self.register_buffer("adj", data.adjacency("sym_prime"), persistent=False)
        register_csr_pair(self, "r_adj", user_item_block(data.train, "sym_prime"))
        self._batch_rows = 0

    def _forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_mm, h_id) over [users; items] (Eqs. 3–6)."""
        h_id = lightgcn_propagate(self.adj, torch.cat([self.user_embedding, self.item_embedding]),
                                  self.config.n_ui_layers)
        x = self.item_embedding * self.gate(self.encoder(self.layer_norm(self.feature_table)))   # h_con
        for _ in range(self.config.n_layers):
            x = sparse_mm(self.item_adj, x, self.item_adj_t)
        return torch.cat([sparse_mm(self.r_adj, x, self.r_adj_t), x]), h_id

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        h_mm, h_id = self._forward()
        out = h_id + h_mm   # Eq. 8, element-wise addition
        return out[: self.n_users], out[self.n_users:]

    def target_similarity(self, items: torch.Tensor) -> torch.Tensor:
        """sg(C(h_enc^i, h_enc^j)) for the batch's items, from the original (frozen) features."""
        with torch.no_grad():
            unit = torch.cat([unit_rows(getattr(self, f"original_{m}")[items]) for m in self.modalities], dim=1)
            unit = unit_rows(unit)
            return unit @ unit.T

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The unweighted terms of Eq. 14 plus the code's L2: bpr, l2, cca, uia, reg."""
        h_mm, h_id = self._forward()
        out = h_id + h_mm
        users, pos = batch.users, batch.pos_items + self.n_users
        u, p, n = out[users], out[pos], out[batch.neg_items + self.n_users]
        # The code divides by the configured batch size, also for the short last batch: the largest seen.
        self._batch_rows = max(self._batch_rows, len(batch))
        tau = self.config.temperature
        return {
            "bpr": bpr_logsigmoid_loss(dot_scores(u, p), dot_scores(u, n)),
            "l2": half_squared_l2(u, p, n, divisor=self._batch_rows),
            "cca": cosine_info_nce(h_mm[pos], h_id[pos], tau) + cosine_info_nce(h_mm[users], h_id[users], tau),
            "uia": cosine_alignment(u, p),
            "reg": similarity_regulariser(h_mm[pos], self.target_similarity(batch.pos_items),
                                          cosine=self.config.reg_similarity == "cosine"),
        }

    def loss(self, batch: Batch) -> torch.Tensor:
        t, c = self.loss_terms(batch), self.config
        return (t["bpr"] + c.reg_weight * t["l2"] + c.cca_weight * t["cca"] + c.uia_weight * t["uia"]
                + c.sim_weight * t["reg"])
