"""LightGCN (ALGORITHMS.md §2.2): mean readout over L propagations on G-sym; EmbLoss on layer-0 rows."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from raymmrec.recsys.graphs import lightgcn_propagate
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.losses import bpr_loss, dot_scores, emb_loss
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch


@dataclass
class LightGCNConfig(ModelConfig):
    """LightGCN hyper-parameters."""

    n_layers: int = 2
    reg_weight: float = 1e-4

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"n_layers": {"grid": [1, 2, 3, 4]}, "reg_weight": {"grid": [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]}}


@register_model("lightgcn")
class LightGCN(Backbone):
    """Linear propagation of ID embeddings over the symmetric-normalised user–item graph."""

    Config = LightGCNConfig

    def __init__(self, config: LightGCNConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.register_buffer("adj", data.adjacency("sym"), persistent=False)

    def _propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user_embedding, self.item_embedding])
        return ego, lightgcn_propagate(self.adj, ego, self.config.n_layers)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._propagate()[1]
        return out[: self.n_users], out[self.n_users:]

    def loss(self, batch: Batch) -> torch.Tensor:
        ego, out = self._propagate()
        # One gather over [users; items] (one scatter in backward) instead of three; index_select's backward
        # (index_add) is ~3× faster on CPU than advanced indexing's (accumulating index_put).
        rows = torch.cat([batch.users, batch.pos_items + self.n_users, batch.neg_items + self.n_users])
        u, p, n = out.index_select(0, rows).split(len(batch))
        reg = emb_loss(*ego.index_select(0, rows).split(len(batch)))
        return bpr_loss(dot_scores(u, p), dot_scores(u, n)) + self.config.reg_weight * reg
