"""FREEDOM (ALGORITHMS.md §2.8): frozen binary item kNN graph + LightGCN on a degree-pruned user–item graph."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from raymmrec.recsys.approximate_knn import KnnMethod
from raymmrec.recsys.edge_pruning import DegreePrunedGraph
from raymmrec.recsys.graphs import lightgcn_propagate, sparse_mm, to_torch_csr
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.losses import bpr_logsigmoid_loss, dot_scores
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch


@dataclass
class FREEDOMConfig(ModelConfig):
    """FREEDOM hyper-parameters; dropout is the share of training edges pruned each epoch."""

    feat_embed_dim: int = 64
    knn_k: int = 10
    n_mm_layers: int = 1
    n_ui_layers: int = 2
    mm_image_weight: float = 0.1
    dropout: float = 0.8
    reg_weight: float = 1e-4
    knn_block_rows: int = 2048
    knn_method: KnnMethod = "exact"       # faiss: approximate neighbours (IVF) for large catalogues

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"dropout": {"grid": [0.8, 0.9]}, "reg_weight": {"grid": [0.0, 1e-5, 1e-4, 1e-3]}}


def modality_weights(modalities: list[str], image_weight: float) -> dict[str, float]:
    """`image` gets mm_image_weight and the other modalities share the rest; a lone modality gets 1."""
    if len(modalities) == 1:
        return {modalities[0]: 1.0}
    others = [m for m in modalities if m != "image"]
    if len(others) == len(modalities):
        return {m: 1.0 / len(modalities) for m in modalities}
    return {m: (image_weight if m == "image" else (1.0 - image_weight) / len(others)) for m in modalities}


@register_model("freedom")
class FREEDOM(DegreePrunedGraph, Backbone):
    """Item–item kNN smoothing of ID embeddings plus LightGCN; modality BPR terms weighted by reg_weight."""

    Config = FREEDOMConfig
    needs_features = True

    def __init__(self, config: FREEDOMConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_id_embedding = nn.Embedding(self.n_items, d)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        # With reg_weight 0 the modality terms get zero gradients, so Adam never moves their tables and
        # they never reach a score: leaving them out is the same model, without 4096-d tables to update.
        self.feature_tables = nn.ModuleDict()
        self.feature_projections = nn.ModuleDict()
        if config.reg_weight > 0:
            for modality, feats in data.features.items():
                self.feature_tables[modality] = nn.Embedding.from_pretrained(torch.from_numpy(feats.copy()), freeze=False)
                self.feature_projections[modality] = nn.Linear(feats.shape[1], config.feat_embed_dim)
        weights = modality_weights(list(data.features), config.mm_image_weight)
        mm = sum(w * data.knn_graph(m, config.knn_k, weighted=False, block_rows=config.knn_block_rows,
                                    method=config.knn_method)
                 for m, w in weights.items())
        self.register_buffer("mm_adj", to_torch_csr(mm), persistent=False)
        self.register_buffer("mm_adj_t", to_torch_csr(mm.T), persistent=False)
        self.init_pruned_graph(data)

    def _propagate(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.item_id_embedding.weight
        for _ in range(self.config.n_mm_layers):
            h = sparse_mm(self.mm_adj, h, self.mm_adj_t)
        ego = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight])
        out = lightgcn_propagate(adj, ego, self.config.n_ui_layers)
        return out[: self.n_users], out[self.n_users:] + h

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.training:
            return self._propagate(self.norm_adj)
        return self._propagate(self.training_adj())

    def loss(self, batch: Batch) -> torch.Tensor:
        users, items = self.final_embeddings()
        u = users[batch.users]
        total = bpr_logsigmoid_loss(dot_scores(u, items[batch.pos_items]), dot_scores(u, items[batch.neg_items]))
        if len(self.feature_tables):
            # Projecting only the batch's distinct items equals MMRec's projection of the whole table.
            ids, inverse = torch.unique(torch.cat([batch.pos_items, batch.neg_items]), return_inverse=True)
            pos_idx, neg_idx = inverse[: len(batch)], inverse[len(batch):]
            modal = 0.0
            for modality, table in self.feature_tables.items():
                f = self.feature_projections[modality](table(ids))
                modal = modal + bpr_logsigmoid_loss(dot_scores(u, f[pos_idx]), dot_scores(u, f[neg_idx]))
            total = total + self.config.reg_weight * modal
        return total
