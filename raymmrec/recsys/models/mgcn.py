"""MGCN (ALGORITHMS.md §2.11): behaviour-purified modality views on frozen kNN-w graphs, attention fuser, InfoNCE.

Generalised from MMRec's fixed (image, text) pair to any number M of modalities: one purifier gate,
item graph and preference gate per modality, a softmax over M in the fuser, and the side embedding
averaged over the M specific parts plus the common part (M + 1 terms; MMRec's /3 for M = 2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from raymmrec.recsys.approximate_knn import KnnMethod
from raymmrec.recsys.embedding_tables import trainable_feature_tables, xavier_uniform_table
from raymmrec.recsys.graphs import lightgcn_propagate, sparse_mm
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.backbone import ModelConfig
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.side_content import SideContentBackbone
from raymmrec.recsys.sparse_item_graphs import register_csr_pair, user_item_block



@dataclass
class MGCNConfig(ModelConfig):
    """MGCN hyper-parameters; cl_loss weights the side/content InfoNCE terms."""

    n_ui_layers: int = 2
    n_layers: int = 1               # item-graph propagations
    knn_k: int = 10
    reg_weight: float = 1e-4
    cl_loss: float = 1e-2
    knn_block_rows: int = 2048
    knn_method: KnnMethod = "exact"       # faiss: approximate neighbours (IVF) for large catalogues

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"cl_loss": {"grid": [1e-3, 1e-2, 1e-1]}}


def gate(d: int) -> nn.Sequential:
    """σ(W x + b), d → d."""
    return nn.Sequential(nn.Linear(d, d), nn.Sigmoid())


@register_model("mgcn")
class MGCN(SideContentBackbone):
    """ID LightGCN view plus per-modality item–item views of purified ID embeddings, fused by attention."""

    Config = MGCNConfig
    needs_features = True
    trainer_defaults: ClassVar[dict[str, Any]] = {"lr_scheduler": [0.96, 50.0]}

    def __init__(self, config: MGCNConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        self.user_embedding = xavier_uniform_table(self.n_users, d)
        self.item_embedding = xavier_uniform_table(self.n_items, d)
        self.modalities = list(data.features)
        self.feature_tables = trainable_feature_tables(data.features)   # the graphs use the originals
        self.projections = nn.ModuleDict({m: nn.Linear(data.features[m].shape[1], d) for m in self.modalities})
        self.purifiers = nn.ModuleDict({m: gate(d) for m in self.modalities})
        self.preferences = nn.ModuleDict({m: gate(d) for m in self.modalities})
        self.query_common = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))
        for m in self.modalities:
            register_csr_pair(self, f"item_adj_{m}",
                              data.knn_graph(m, config.knn_k, weighted=True, block_rows=config.knn_block_rows,
                                             method=config.knn_method))
        self.register_buffer("adj", data.adjacency("sym_prime"), persistent=False)
        register_csr_pair(self, "r_adj", user_item_block(data.train, "sym_prime"))

    def _modality_view(self, m: str) -> torch.Tensor:
        """[R̂ x; x] with x = S_m^L (E_items ⊙ σ(G_m W_m f_m)): the purified item–item view of modality m."""
        x = self.item_embedding * self.purifiers[m](self.projections[m](self.feature_tables[m]))
        for _ in range(self.config.n_layers):
            x = sparse_mm(getattr(self, f"item_adj_{m}"), x, getattr(self, f"item_adj_{m}_t"))
        return torch.cat([sparse_mm(self.r_adj, x, self.r_adj_t), x])

    def _forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(side, content) embeddings over [users; items]."""
        content = lightgcn_propagate(self.adj, torch.cat([self.user_embedding, self.item_embedding]),
                                     self.config.n_ui_layers)
        views = [self._modality_view(m) for m in self.modalities]
        attention = torch.softmax(torch.cat([self.query_common(v) for v in views], dim=1), dim=1)
        common = sum(attention[:, j:j + 1] * v for j, v in enumerate(views))
        specific = sum(self.preferences[m](content) * (v - common) for m, v in zip(self.modalities, views))
        return (specific + common) / (len(views) + 1), content
