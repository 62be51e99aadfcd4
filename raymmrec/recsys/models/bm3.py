"""BM3 (ALGORITHMS.md §2.10): bootstrapped latent views without negatives; dropout targets, cosine losses."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.recsys.alignment_losses import cosine_alignment
from raymmrec.recsys.embedding_tables import trainable_feature_tables, xavier_uniform_table
from raymmrec.recsys.graphs import lightgcn_propagate
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.losses import emb_loss
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch


@dataclass
class BM3Config(ModelConfig):
    """BM3 hyper-parameters; dropout makes the target views, cl_weight weights the modality terms."""

    feat_embed_dim: int = 64        # MMRec sets it to embedding_size; kept equal (the predictor is shared)
    n_layers: int = 1
    dropout: float = 0.3
    reg_weight: float = 0.1
    cl_weight: float = 2.0

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"n_layers": {"grid": [1, 2]}, "reg_weight": {"grid": [0.1, 0.01]}, "dropout": {"grid": [0.3, 0.5]}}


@register_model("bm3")
class BM3(Backbone):
    """LightGCN online views predicted onto dropout-perturbed target views of users, items and modalities."""

    Config = BM3Config
    uses_negatives = False
    needs_features = True

    def __init__(self, config: BM3Config, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        self.user_embedding = xavier_uniform_table(self.n_users, d)
        self.item_embedding = xavier_uniform_table(self.n_items, d)
        self.predictor = nn.Linear(d, d)
        nn.init.xavier_normal_(self.predictor.weight)
        self.feature_tables = trainable_feature_tables(data.features)
        self.projections = nn.ModuleDict({m: nn.Linear(f.shape[1], d) for m, f in data.features.items()})
        for projection in self.projections.values():
            nn.init.xavier_normal_(projection.weight)
        self.register_buffer("adj", data.adjacency("sym"), persistent=False)

    def _online(self) -> tuple[torch.Tensor, torch.Tensor]:
        """LightGCN users and items, items with the ID residual (before the predictor)."""
        out = lightgcn_propagate(self.adj, torch.cat([self.user_embedding, self.item_embedding]), self.config.n_layers)
        return out[: self.n_users], out[self.n_users:] + self.item_embedding

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = self._online()
        return self.predictor(users), self.predictor(items)

    def loss(self, batch: Batch) -> torch.Tensor:
        users_all, items_all = self._online()
        u, i = users_all[batch.users], items_all[batch.pos_items]
        p = self.config.dropout
        # Targets: dropout of the detached online rows; only the batch's rows are ever compared, so only
        # they are perturbed (same distribution as MMRec's whole-table dropout).
        u_target = F.dropout(u.detach(), p)
        i_target = F.dropout(i.detach(), p)
        total = cosine_alignment(self.predictor(u), i_target) + cosine_alignment(self.predictor(i), u_target)
        total = total + self.config.reg_weight * emb_loss(users_all, items_all)
        modal = 0.0
        for modality, table in self.feature_tables.items():
            f = self.projections[modality](table[batch.pos_items])
            modal = modal + cosine_alignment(self.predictor(f), i_target)
            modal = modal + cosine_alignment(self.predictor(f), F.dropout(f.detach(), p))
        return total + self.config.cl_weight * modal
