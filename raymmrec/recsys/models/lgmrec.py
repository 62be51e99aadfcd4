"""LGMRec (Guo et al., AAAI 2024; MMRec's lgmrec.py): local graph embeddings (collaborative LightGCN plus
per-modality graph propagation of projected features) and global hypergraph embeddings over learned
item–hyperedge assignments, with a cross-modal hypergraph contrastive term."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.errors import ConfigError
from raymmrec.recsys.graphs import lightgcn_propagate, sparse_mm, to_torch_csr
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.modal_branches import mmrec_modality_order
from raymmrec.recsys.losses import bpr_logsigmoid_loss, dot_scores, emb_loss
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch

TAU = 0.2   # MMRec's fixed temperature of the Gumbel-softmax assignments and the contrastive term


@dataclass
class LGMRecConfig(ModelConfig):
    """LGMRec hyper-parameters (MMRec's LGMRec.yaml, Baby preset; the grid spans its Baby/Sports/Clothing presets)."""

    feat_embed_dim: int = 64          # the local modal embeddings are added to the ID ones: equal to embedding_size
    cf_model: Literal["lightgcn", "mf"] = "lightgcn"
    n_ui_layers: int = 2
    n_mm_layers: int = 2
    n_hyper_layer: int = 1
    hyper_num: int = 4
    keep_rate: float = 0.5
    alpha: float = 0.3
    cl_weight: float = 1e-4
    reg_weight: float = 1e-6

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"n_hyper_layer": {"grid": [1, 2]}, "hyper_num": {"grid": [4, 64]},
                "keep_rate": {"grid": [0.2, 0.4, 0.5]}, "alpha": {"grid": [0.2, 0.3, 0.6]}}


def hypergraph_propagate(item_hyper: torch.Tensor, user_hyper: torch.Tensor, items: torch.Tensor,
                         n_layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(users, items) after `n_layers` of items → hyperedges → items (users read the last hyperedge layer)."""
    users = None
    for _ in range(n_layers):
        hyperedges = item_hyper.T @ items
        items = item_hyper @ hyperedges
        users = user_hyper @ hyperedges
    return users, items


def contrastive_sum(anchors: torch.Tensor, positives: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Σ_r −log(exp(cos(a_r, p_r)/τ) / Σ_c exp(cos(a_r, c)/τ)), candidates all rows of `candidates`."""
    a = F.normalize(anchors) / TAU      # τ folded into the anchors: no pass over the rows × candidates matrix
    pos = (a * F.normalize(positives)).sum(dim=1)
    # cosines over τ lie in [−1/τ, 1/τ], so exp cannot overflow: MMRec's plain exp-sum, one pass cheaper than logsumexp
    return ((a @ F.normalize(candidates).T).exp().sum(dim=1).log() - pos).sum()


@register_model("lgmrec")
class LGMRec(Backbone):
    """e = CGE + Σ_m norm(MGE_m) + alpha · norm(Σ_m GHE_m); BPR + cl_weight · hypergraph InfoNCE + reg_weight · L2."""

    Config = LGMRecConfig
    needs_features = True

    def __init__(self, config: LGMRecConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        if config.feat_embed_dim != d:
            raise ConfigError(f"lgmrec: feat_embed_dim ({config.feat_embed_dim}) must equal embedding_size ({d}): "
                              f"the modal embeddings are added to the collaborative ones")
        if config.n_hyper_layer < 1:
            raise ConfigError(f"lgmrec.n_hyper_layer must be at least 1, got {config.n_hyper_layer}")
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_id_embedding = nn.Embedding(self.n_items, d)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        # MMRec's order (image first): its contrast anchors image against text, and draws image's noise first
        self.modalities = mmrec_modality_order(data.features)
        self.projections = nn.ParameterDict()
        self.hyperedges = nn.ParameterDict()
        for m in self.modalities:
            feats = data.features[m]
            self.register_buffer(f"features_{m}", torch.as_tensor(feats, dtype=torch.float32), persistent=False)
            self.projections[m] = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(feats.shape[1], d)))
            self.hyperedges[m] = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(feats.shape[1], config.hyper_num)))
        self.dropout = nn.Dropout(p=1.0 - config.keep_rate)
        train = sp.csr_matrix(data.train, dtype=np.float32)
        self.register_buffer("interactions", to_torch_csr(train), persistent=False)
        self.register_buffer("interactions_t", to_torch_csr(train.T), persistent=False)
        degree = np.diff(sp.csr_matrix(train).indptr).astype(np.float32)      # distinct items per user
        self.register_buffer("inv_user_degree", torch.from_numpy(1.0 / (degree + 1e-7)).unsqueeze(1),
                             persistent=False)
        self.register_buffer("norm_adj", data.adjacency("sym"), persistent=False)

    def _features(self, m: str) -> torch.Tensor:
        return getattr(self, f"features_{m}")

    def _collaborative(self) -> torch.Tensor:
        ego = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight])
        if self.config.cf_model == "mf":
            return ego
        return lightgcn_propagate(self.norm_adj, ego, self.config.n_ui_layers)

    def _modal_graph(self, m: str) -> torch.Tensor:
        """Projected item features, users as the mean of their items', propagated n_mm_layers times (last layer)."""
        items = self._features(m) @ self.projections[m]
        users = sparse_mm(self.interactions, items, self.interactions_t) * self.inv_user_degree
        out = torch.cat([users, items])
        for _ in range(self.config.n_mm_layers):
            out = sparse_mm(self.norm_adj, out)
        return out

    def _forward(self) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """All [users; items] embeddings and each modality's (user, item) hypergraph embeddings."""
        # Every modality's Gumbel draws come before any dropout draw, in MMRec's order, so equally
        # seeded runs match. Users' assignments are their items' summed logits, drawn separately.
        assignments = {}
        for m in self.modalities:
            item_logits = self._features(m) @ self.hyperedges[m]
            user_logits = sparse_mm(self.interactions, item_logits, self.interactions_t)
            assignments[m] = (F.gumbel_softmax(item_logits, TAU, dim=1, hard=False),
                              F.gumbel_softmax(user_logits, TAU, dim=1, hard=False))
        collaborative = self._collaborative()
        local = collaborative + sum(F.normalize(self._modal_graph(m)) for m in self.modalities)
        hyper = {}
        for m in self.modalities:
            item_hyper, user_hyper = assignments[m]
            hyper[m] = hypergraph_propagate(self.dropout(item_hyper), self.dropout(user_hyper),
                                            collaborative[self.n_users:], self.config.n_hyper_layer)
        global_ = sum(torch.cat(hyper[m]) for m in self.modalities)
        return local + self.config.alpha * F.normalize(global_), hyper

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        # MMRec's scores keep the Gumbel noise at evaluation too (only the dropout switches off)
        out = self._forward()[0]
        return out[: self.n_users], out[self.n_users:]

    def loss(self, batch: Batch) -> torch.Tensor:
        out, hyper = self._forward()
        u = out[batch.users]
        pos, neg = out[batch.pos_items + self.n_users], out[batch.neg_items + self.n_users]
        total = bpr_logsigmoid_loss(dot_scores(u, pos), dot_scores(u, neg))
        # cross-modal hypergraph contrast, every pair of modalities (MMRec's two: image → text)
        contrast = 0.0
        for a, b in combinations(self.modalities, 2):
            (ua, ia), (ub, ib) = hyper[a], hyper[b]
            contrast = contrast + contrastive_sum(ua[batch.users], ub[batch.users], ub)
            contrast = contrast + contrastive_sum(ia[batch.pos_items], ib[batch.pos_items], ib)
        return total + self.config.cl_weight * contrast + self.config.reg_weight * emb_loss(u, pos, neg)
