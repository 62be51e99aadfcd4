"""GRCN as MMRec implements it (ALGORITHMS.md §2.5): content attention refines the graph the ID GCN uses.

Per modality m: F_m = nrm(LReLU(W_m f + b)), x = [nrm(P_m); F_m]; one attention pass over the
bidirectional training edges, α_{j→i} = softmax_{j∈N(i)}(x_i·x_j), gives out_m = x + Σ α x_j.
Edge weights w_e = ReLU(max_m α^m_e · c[source(e), m]) with a trainable confidence table c;
the ID GCN is x = nrm(E), h₁ = Σ w x_j, h₂ = Σ w h₁, output x + h₁ + h₂. Representation
[ID; out_m for each modality], score = inner product.
MMRec's routing loop passes messages only user→item, so users receive nothing and it reduces to
nrm(P); it is left out. Attention, softmax and weighted sums run on torch sparse CSR
(`EdgeWeightedGraph`), measured faster here than torch_geometric's gather/scatter message passing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.recsys.edge_weighted_graph import EdgeWeightedGraph
from raymmrec.recsys.graphs import bipartite_adjacency
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.losses import stacked_bpr_with_id_reg
from raymmrec.recsys.modal_branches import VISUAL, mmrec_modality_order
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch


@dataclass
class GRCNConfig(ModelConfig):
    """GRCN hyper-parameters; latent_embedding is d_C of the content GCNs."""

    latent_embedding: int = 64
    reg_weight: float = 1e-4

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"reg_weight": {"grid": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5]}}


@register_model("grcn")
class GRCN(Backbone):
    """Graph-refined convolution: modality attention prunes and weights the user–item edges."""

    Config = GRCNConfig
    # MMRec's lr grid: a trainer field, tuned alongside the config's own space.
    trainer_search_space: ClassVar[dict[str, dict[str, list]]] = {"lr": {"grid": [1.0, 0.1, 0.01, 1e-3, 1e-4]}}
    needs_features = True

    def __init__(self, config: GRCNConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d, dc = config.embedding_size, config.latent_embedding
        n = self.n_users + self.n_items
        self.modalities = mmrec_modality_order(data.features)
        self.id_embedding = nn.Parameter(nn.init.xavier_normal_(torch.rand(n, d)))
        self.preference = nn.ParameterDict()
        self.projection = nn.ModuleDict()
        for m in self.modalities:
            feats = torch.from_numpy(data.features[m])
            self.register_buffer(f"features_{m}", feats, persistent=False)
            self.preference[m] = nn.Parameter(nn.init.xavier_normal_(torch.rand(self.n_users, dc)))
            self.projection[m] = nn.Linear(feats.shape[1], dc)
            nn.init.xavier_normal_(self.projection[m].weight)
        self.confidence = nn.Parameter(nn.init.xavier_normal_(torch.rand(n, len(self.modalities))))
        self.graph = EdgeWeightedGraph(bipartite_adjacency(data.train))

    def _content(self, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        feats = getattr(self, f"features_{modality}")
        items = F.normalize(F.leaky_relu(self.projection[modality](feats)))
        x = torch.cat([F.normalize(self.preference[modality]), items])
        alpha = self.graph.softmax(self.graph.edge_dot(x, x))
        return x + self.graph.aggregate(alpha, x), alpha

    def _representation(self) -> torch.Tensor:
        contents, alphas = zip(*(self._content(m) for m in self.modalities))
        # Confidence of the edge's source node per modality, then the strongest modality per edge.
        scaled = torch.stack(alphas, dim=1) * self.confidence[self.graph.col]
        weights = torch.relu(scaled.max(dim=1).values)
        x = F.normalize(self.id_embedding)
        h1 = self.graph.aggregate(weights, x)
        h2 = self.graph.aggregate(weights, h1)
        return torch.cat([x + h1 + h2, *contents], dim=1)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        # MMRec reuses the last training batch's representation (one step stale); this recomputes it.
        rep = self._representation()
        return rep[: self.n_users], rep[self.n_users:]

    def loss(self, batch: Batch) -> torch.Tensor:
        loss, reg = stacked_bpr_with_id_reg(self._representation(), self.id_embedding, batch, self.n_users)
        if VISUAL in self.preference:
            reg = reg + self.preference[VISUAL].pow(2).mean()
        reg = reg + sum(p[batch.users].pow(2).mean() for p in self.preference.values())
        return loss + self.config.reg_weight * reg
