"""PGL (Principal Graph Learning, AAAI'25) as MMRec implements it, in its `local` mode.

Items are the concatenated, row-normalised projections of their M modality features; users one table
per modality, concatenated. Training propagates over a principal subgraph: each epoch keeps 30% of the
training edges drawn ∝ 1/sqrt(d_u d_i) (FREEDOM's pruning), renormalised; evaluation uses the full
G-sym graph. Items add S·x over the frozen FREEDOM-style KNN-bin graph mixed by mm_image_weight. Loss:
BPR + reg_weight · ½(InfoNCE(drop(u), drop(u)) + InfoNCE(drop(i⁺), drop(i⁺))), τ = 0.2, two dropout draws.

MMRec's `global` mode multiplies a truncated SVD back into a dense (users + items)² matrix before
thresholding it: not scale-safe, so it is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.errors import ConfigError
from raymmrec.recsys.alignment_losses import cosine_info_nce
from raymmrec.recsys.edge_pruning import degree_edge_weights, kept_edge_index, pruned_adjacency, training_edges
from raymmrec.recsys.embedding_tables import trainable_feature_tables, xavier_uniform_table
from raymmrec.recsys.graphs import lightgcn_propagate, sparse_mm
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.losses import bpr_logsigmoid_loss, dot_scores
from raymmrec.recsys.modal_branches import mmrec_modality_order
from raymmrec.recsys.models.freedom import modality_weights
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch
from raymmrec.recsys.sparse_item_graphs import register_csr_pair

NCE_TEMPERATURE = 0.2   # hard-coded in MMRec's calculate_loss


@dataclass
class PGLConfig(ModelConfig):
    """PGL hyper-parameters (MMRec's PGL.yaml); reg_weight weighs the self-contrast term, edge_keep is MMRec's 0.3."""

    knn_k: int = 10
    n_mm_layers: int = 1
    n_ui_layers: int = 2
    mm_image_weight: float = 0.1
    reg_weight: float = 0.0
    dropout: float = 0.2
    mode: str = "local"
    edge_keep: float = 0.3
    knn_block_rows: int = 2048

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"dropout": {"grid": [0.2]}, "reg_weight": {"grid": [0.0]}, "mode": {"grid": ["local"]}}


@register_model("pgl")
class PGL(Backbone):
    """Per-modality user tables and projected item features on a pruned principal subgraph plus an item kNN graph."""

    Config = PGLConfig
    needs_features = True
    trainer_defaults: ClassVar[dict[str, Any]] = {"lr_scheduler": [0.96, 50.0]}

    def __init__(self, config: PGLConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        if config.mode != "local":
            raise ConfigError(f"pgl.mode: only 'local' is supported (MMRec's 'global' builds a dense "
                              f"(users + items)² matrix), got '{config.mode}'")
        if not 0 < config.edge_keep <= 1:
            raise ConfigError(f"pgl.edge_keep: expected a share in (0, 1], got {config.edge_keep}")
        d = config.embedding_size
        self.modalities = mmrec_modality_order(data.features)
        self.user_tables = nn.ParameterDict({m: xavier_uniform_table(self.n_users, d) for m in self.modalities})
        self.feature_tables = trainable_feature_tables(data.features)
        self.projections = nn.ModuleDict({m: nn.Linear(data.features[m].shape[1], d) for m in self.modalities})
        self.dropout = nn.Dropout(config.dropout)
        weights = modality_weights(self.modalities, config.mm_image_weight)
        mm = sum(w * data.knn_graph(m, config.knn_k, weighted=False, block_rows=config.knn_block_rows)
                 for m, w in weights.items())
        register_csr_pair(self, "mm_adj", mm)
        self.register_buffer("norm_adj", data.adjacency("sym"), persistent=False)
        self.register_buffer("edges", training_edges(data), persistent=False)
        self.register_buffer("edge_weights", degree_edge_weights(self.edges, self.n_users, self.n_items),
                             persistent=False)
        self.sub_graph: torch.Tensor | None = None

    def pre_epoch(self, epoch: int) -> None:
        """Draw this epoch's principal subgraph."""
        kept = kept_edge_index(self.edge_weights, self.config.edge_keep)
        self.sub_graph = pruned_adjacency(self.edges[:, kept], self.n_users, self.n_items)

    def _propagate(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        items = torch.cat([F.normalize(self.projections[m](self.feature_tables[m])) for m in self.modalities], dim=1)
        users = torch.cat([self.user_tables[m] for m in self.modalities], dim=1)
        h = items
        for _ in range(self.config.n_mm_layers):
            h = sparse_mm(self.mm_adj, h, self.mm_adj_t)
        out = lightgcn_propagate(adj, torch.cat([users, items]), self.config.n_ui_layers)
        return out[: self.n_users], out[self.n_users:] + h

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.training:
            return self._propagate(self.norm_adj)
        if self.sub_graph is None:
            self.pre_epoch(0)
        return self._propagate(self.sub_graph)

    def loss(self, batch: Batch) -> torch.Tensor:
        users, items = self.final_embeddings()
        u, p = users[batch.users], items[batch.pos_items]
        total = bpr_logsigmoid_loss(dot_scores(u, p), dot_scores(u, items[batch.neg_items]))
        if self.config.reg_weight:
            cl = (cosine_info_nce(self.dropout(u), self.dropout(u), NCE_TEMPERATURE)
                  + cosine_info_nce(self.dropout(p), self.dropout(p), NCE_TEMPERATURE)) / 2
            total = total + self.config.reg_weight * cl
        return total
