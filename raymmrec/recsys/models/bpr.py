"""BPR-MF (ALGORITHMS.md §2.1): ID embeddings, inner-product score, BPRLoss + λ·EmbLoss."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.losses import bpr_loss, dot_scores, emb_loss
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch


@dataclass
class BPRConfig(ModelConfig):
    """BPR hyper-parameters; reg_weight weights EmbLoss(p_u, q_i, q_j)."""

    reg_weight: float = 1e-4

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"reg_weight": {"grid": [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]}}


@register_model("bpr")
class BPR(Backbone):
    """Matrix factorisation trained with BPR."""

    Config = BPRConfig

    def __init__(self, config: BPRConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        self.user_embedding = nn.Embedding(self.n_users, config.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, config.embedding_size)
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)

    def loss(self, batch: Batch) -> torch.Tensor:
        u = self.user_embedding(batch.users)
        p = self.item_embedding(batch.pos_items)
        n = self.item_embedding(batch.neg_items)
        return bpr_loss(dot_scores(u, p), dot_scores(u, n)) + self.config.reg_weight * emb_loss(u, p, n)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_embedding.weight, self.item_embedding.weight
