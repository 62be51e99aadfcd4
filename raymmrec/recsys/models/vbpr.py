"""VBPR as MMRec implements it (ALGORITHMS.md §2.3): q_i = [γ_i; W f_i + b], f_i = [text; image], no biases."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.losses import bpr_loss, dot_scores, emb_loss
from raymmrec.recsys.models.bpr import BPRConfig
from raymmrec.recsys.backbone import Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch


@dataclass
class VBPRConfig(BPRConfig):
    """VBPR has BPR's hyper-parameters and grid; users get 2·embedding_size dimensions."""


@register_model("vbpr")
class VBPR(Backbone):
    """BPR-MF whose item vectors append a linear projection of the (frozen) item features."""

    Config = VBPRConfig
    needs_features = True

    def __init__(self, config: VBPRConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        self.u_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, 2 * d)))
        self.i_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.modalities = list(data.features)
        features = np.concatenate(list(data.features.values()), axis=1)
        self.register_buffer("item_features", torch.from_numpy(features), persistent=False)
        self.item_linear = nn.Linear(features.shape[1], d)
        nn.init.xavier_normal_(self.item_linear.weight)
        nn.init.zeros_(self.item_linear.bias)

    def set_item_features(self, features: dict[str, torch.Tensor]) -> None:
        # Same [text; image] concatenation as at build time; a tensor with a graph lets gradients reach the encoder.
        self.item_features = torch.cat([features[m] for m in self.modalities], dim=1)

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """q_i for `items` (all items when None)."""
        if items is None:
            return torch.cat([self.i_embedding, self.item_linear(self.item_features)], dim=1)
        return torch.cat([self.i_embedding[items], self.item_linear(self.item_features[items])], dim=1)

    def loss(self, batch: Batch) -> torch.Tensor:
        # Projecting only the batch's distinct items gives MMRec's loss and gradients at a fraction of the cost.
        items, inverse = torch.unique(torch.cat([batch.pos_items, batch.neg_items]), return_inverse=True)
        q = self.item_vectors(items)[inverse]
        p, n = q[: len(batch)], q[len(batch):]
        u = self.u_embedding[batch.users]
        return bpr_loss(dot_scores(u, p), dot_scores(u, n)) + self.config.reg_weight * emb_loss(u, p, n)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.u_embedding, self.item_vectors()
