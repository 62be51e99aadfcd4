"""LayerGCN (Zhou et al., ICDE 2023; MMRec's layergcn.py): layer-refined propagation, each layer rescaled by
its cosine to the ego embeddings, summed; degree-pruned training graph, alternating with uniform pruning."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from raymmrec.errors import ConfigError
from raymmrec.recsys.edge_pruning import DegreePrunedGraph
from raymmrec.recsys.embedding_tables import xavier_uniform_table
from raymmrec.recsys.graphs import sparse_mm
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.losses import dot_scores
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch


@dataclass
class LayerGCNConfig(ModelConfig):
    """LayerGCN hyper-parameters (MMRec's LayerGCN.yaml); dropout is the share of training edges pruned."""

    n_layers: int = 4
    reg_weight: float = 1e-3
    dropout: float = 0.1

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"n_layers": {"grid": [4]}, "dropout": {"grid": [0.0, 0.1, 0.2]},
                "reg_weight": {"grid": [1e-2, 1e-3, 1e-4, 1e-5]}}


@register_model("layergcn")
class LayerGCN(DegreePrunedGraph, Backbone):
    """ID-only: E^{l+1} = cos(ÂE^l, E^0) ⊙ ÂE^l, readout Σ_{l≥1} E^l; summed BPR plus ½‖E^0‖² of the batch."""

    Config = LayerGCNConfig

    def __init__(self, config: LayerGCNConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        if config.n_layers < 1:
            raise ConfigError(f"layergcn.n_layers must be at least 1 (its readout sums layers 1..L), "
                              f"got {config.n_layers}")
        d = config.embedding_size
        self.user_embedding = xavier_uniform_table(self.n_users, d)
        self.item_embedding = xavier_uniform_table(self.n_items, d)
        self.init_pruned_graph(data)

    def pre_epoch(self, epoch: int) -> None:
        """Prune `dropout` of the edges: ∝ 1/sqrt(d_u d_i) in odd epochs, uniformly in even ones (as MMRec's toggle)."""
        self.prune_edges(uniform=epoch % 2 == 0)

    def _propagate(self, adj: torch.Tensor) -> torch.Tensor:
        ego = torch.cat([self.user_embedding, self.item_embedding])
        layer, total = ego, None
        for _ in range(self.config.n_layers):
            layer = sparse_mm(adj, layer)
            # the layer's similarity to the ego embeddings scales it: layers drifting from E^0 count less
            layer = F.cosine_similarity(layer, ego, dim=-1).unsqueeze(1) * layer
            total = layer if total is None else total + layer
        return total

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._propagate(self.training_adj() if self.training else self.norm_adj)
        return out[: self.n_users], out[self.n_users:]

    def loss(self, batch: Batch) -> torch.Tensor:
        users, items = self.final_embeddings()
        u = users[batch.users]
        # MMRec sums (not averages) the batch's BPR terms and its squared-L2 term
        bpr = -F.logsigmoid(dot_scores(u, items[batch.pos_items]) - dot_scores(u, items[batch.neg_items])).sum()
        ego = (self.user_embedding[batch.users], self.item_embedding[batch.pos_items],
               self.item_embedding[batch.neg_items])
        return bpr + self.config.reg_weight * 0.5 * sum(e.pow(2).sum() for e in ego)
