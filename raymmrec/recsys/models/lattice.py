"""LATTICE (ALGORITHMS.md §2.7): a learned item–item kNN graph mixed with the frozen one, LightGCN on G-rw+I.

Sparse throughout: MMRec holds 6–8 dense n_items² matrices (15.9 GB each at Electronics); here the learned
graph is a top-k edge list rebuilt once per epoch from the projected features, blockwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.recsys.alignment_losses import half_squared_l2
from raymmrec.recsys.approximate_knn import KnnMethod
from raymmrec.recsys.embedding_tables import trainable_feature_tables, xavier_uniform_table
from raymmrec.recsys.graphs import normalized_adjacency, sparse_mm
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.losses import bpr_logsigmoid_loss, dot_scores
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch
from raymmrec.recsys.sparse_item_graphs import EdgeGraph, csr_pair, learned_knn_graph, register_csr_pair


@dataclass
class LATTICEConfig(ModelConfig):
    """LATTICE hyper-parameters; lambda_coeff is the frozen graph's share of the mixed item graph."""

    feat_embed_dim: int = 64
    n_ui_layers: int = 2            # MMRec: len(weight_size) with weight_size [64, 64]
    n_layers: int = 1               # item-graph propagations
    knn_k: int = 10
    lambda_coeff: float = 0.9
    reg_weight: float = 1e-4
    knn_block_rows: int = 2048
    knn_method: KnnMethod = "exact"       # faiss: approximate neighbours (IVF) for large catalogues

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"reg_weight": {"grid": [0.0, 1e-5, 1e-4, 1e-3]}}


@register_model("lattice")
class LATTICE(Backbone):
    """ID embeddings smoothed over a learned + frozen multimodal item graph, plus LightGCN on G-rw+I."""

    Config = LATTICEConfig
    needs_features = True
    trainer_defaults: ClassVar[dict[str, Any]] = {"lr_scheduler": [0.96, 50.0]}
    trainer_search_space: ClassVar[dict[str, dict[str, list]]] = {"lr": {"grid": [1e-4, 5e-4, 1e-3, 5e-3]}}

    def __init__(self, config: LATTICEConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        self.user_embedding = xavier_uniform_table(self.n_users, config.embedding_size)
        self.item_embedding = xavier_uniform_table(self.n_items, config.embedding_size)
        self.modalities = list(data.features)
        self.feature_tables = trainable_feature_tables(data.features)   # the graphs use the originals
        self.projections = nn.ModuleDict(
            {m: nn.Linear(data.features[m].shape[1], config.feat_embed_dim) for m in self.modalities})
        self.modal_weight = nn.Parameter(torch.full((len(self.modalities),), 0.5))
        self._fixed_graphs = {m: data.knn_graph(m, config.knn_k, weighted=True, block_rows=config.knn_block_rows,
                                                method=config.knn_method)
                              for m in self.modalities}
        for m, graph in self._fixed_graphs.items():
            register_csr_pair(self, f"fixed_adj_{m}", graph)
        register_csr_pair(self, "adj", normalized_adjacency(data.train, "rw_self_loop"))
        self._rebuild_graph = True
        self._item_adj: tuple[torch.Tensor, torch.Tensor] | None = None   # this epoch's graph, detached
        self._batch_rows = 0

    # ---------------------------------------------------------------- item graph
    def _learned_graph(self) -> tuple[EdgeGraph, torch.Tensor]:
        weights = torch.softmax(self.modal_weight, dim=0)
        projected = [self.projections[m](self.feature_tables[m]) for m in self.modalities]
        return learned_knn_graph(projected, weights, self.config.knn_k, self.config.knn_block_rows), weights

    def _fixed_part(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * sparse_mm(getattr(self, f"fixed_adj_{m}"), x, getattr(self, f"fixed_adj_{m}_t"))
                   for w, m in zip(weights, self.modalities))

    def _freeze_graph(self, learned: EdgeGraph, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """S = (1-λ)·learned + λ·Σ w_m fixed_m as one detached sparse matrix (and its transpose)."""
        lam = self.config.lambda_coeff
        mixed = (1 - lam) * learned.to_scipy()
        for w, m in zip(weights.detach().cpu().tolist(), self.modalities):
            mixed = mixed + lam * w * self._fixed_graphs[m]
        s, s_t = csr_pair(mixed)
        return s.to(self.device), s_t.to(self.device)

    def _item_side(self) -> torch.Tensor:
        """h = S^n_layers · E_items, rebuilding S (with gradient) in the first batch of an epoch, as MMRec does."""
        h = self.item_embedding
        if self._rebuild_graph or self._item_adj is None:
            learned, weights = self._learned_graph()
            self._item_adj = self._freeze_graph(learned, weights)
            self._rebuild_graph = False
            lam = self.config.lambda_coeff
            for _ in range(self.config.n_layers):
                h = (1 - lam) * learned.propagate(h) + lam * self._fixed_part(h, weights)
            return h
        s, s_t = self._item_adj
        for _ in range(self.config.n_layers):
            h = sparse_mm(s, h, s_t)
        return h

    def pre_epoch(self, epoch: int) -> None:
        """Mark the item graph for rebuilding at the epoch's first batch."""
        self._rebuild_graph = True

    # ---------------------------------------------------------------- forward / loss
    def _embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        h = self._item_side()
        total = layer = torch.cat([self.user_embedding, self.item_embedding])
        for _ in range(self.config.n_ui_layers):
            layer = sparse_mm(self.adj, layer, self.adj_t)
            total = total + layer
        out = total / (self.config.n_ui_layers + 1)
        return out[: self.n_users], out[self.n_users:] + F.normalize(h, dim=1)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.training:
            # MMRec rebuilds the graph from the current features at every evaluation.
            self._rebuild_graph = True
        return self._embeddings()

    def loss(self, batch: Batch) -> torch.Tensor:
        users, items = self._embeddings()
        u, p, n = users[batch.users], items[batch.pos_items], items[batch.neg_items]
        # MMRec divides by the configured batch size, also for the short last batch: the largest seen.
        self._batch_rows = max(self._batch_rows, len(batch))
        return (bpr_logsigmoid_loss(dot_scores(u, p), dot_scores(u, n))
                + self.config.reg_weight * half_squared_l2(u, p, n, divisor=self._batch_rows))
