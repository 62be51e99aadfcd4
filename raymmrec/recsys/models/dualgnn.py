"""DualGNN as MMRec implements it (ALGORITHMS.md §2.6): modality GCNs fused per user, then a user–user graph.

Per modality m: F = Linear(256→d)(LReLU(Linear(dim→256)(f))), x = nrm([P_m; F]), rep_m = x + Ãx + Ã²x
on the sym-normalised bidirectional training graph. Items: Σ_m rep_m. Users: Σ_m w_{u,m} slot_m with
softmax-initialised trainable w_u, where slot 0 holds Σ_m rep_m (MMRec's in-place sum) and slot m the
rep of modality m. Then user += Σ_k ω_{uk} user[nbr_k] over 40 co-users per user, resampled each epoch
from the top-200 co-occurrence graph, ω = softmax of their co-counts. Loss: −mean log₂ σ(Δ) + λ(…).
The co-occurrence graph is built blockwise and sparse (`user_graph`), the neighbour sum is a sparse
product; MMRec's unused dropped-edge graphs are not built.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.recsys.graphs import sparse_mm
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.modal_branches import mmrec_modality_order
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch
from raymmrec.recsys.user_graph import neighbour_weight_tensors, sample_user_neighbours, user_cooccurrence_topk

HIDDEN = 256   # MMRec: Linear(feat → 4·64) then Linear(4·64 → 64)


@dataclass
class DualGNNConfig(ModelConfig):
    """DualGNN hyper-parameters (MMRec hard-codes embedding_size 64)."""

    reg_weight: float = 1e-4
    user_topk: int = 200            # co-users kept per user by preprocessing
    user_neighbours: int = 40       # co-users sampled per user each epoch
    graph_block_products: int = 20_000_000

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"reg_weight": {"grid": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5]}}


@register_model("dualgnn")
class DualGNN(Backbone):
    """Modality GCNs with learned per-user modality weights and co-occurrence user smoothing."""

    Config = DualGNNConfig
    # MMRec's lr grid: a trainer field, tuned alongside the config's own space.
    trainer_search_space: ClassVar[dict[str, dict[str, list]]] = {"lr": {"grid": [0.1, 0.01, 1e-3, 1e-4, 1e-5]}}
    needs_features = True

    def __init__(self, config: DualGNNConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        self.modalities = mmrec_modality_order(data.features)
        n_mod = len(self.modalities)
        self.preference = nn.ParameterDict()
        self.projection = nn.ModuleDict()
        for m in self.modalities:
            feats = torch.from_numpy(data.features[m])
            self.register_buffer(f"features_{m}", feats, persistent=False)
            self.preference[m] = nn.Parameter(nn.init.xavier_normal_(torch.randn(self.n_users, d)))
            self.projection[m] = nn.Sequential(nn.Linear(feats.shape[1], HIDDEN), nn.LeakyReLU(), nn.Linear(HIDDEN, d))
        self.user_weight = nn.Parameter(torch.softmax(nn.init.xavier_normal_(torch.randn(self.n_users, n_mod, 1)), 1))
        # Only regularised in MMRec's loss; never used by the forward pass.
        self.item_weight = nn.Parameter(torch.softmax(nn.init.xavier_normal_(torch.randn(self.n_items, n_mod, 1)), 1))
        self.register_buffer("adj", data.adjacency("sym_prime"), persistent=False)
        key = ("user_cooccurrence", config.user_topk)
        self.cooccurrence = data._cached(key, lambda: user_cooccurrence_topk(
            data.train, config.user_topk, config.graph_block_products))
        # The epoch's neighbour draw is a function of this seed, so a checkpoint restores it exactly.
        self.register_buffer("user_graph_seed", torch.tensor(-1, dtype=torch.int64))
        self._built_seed = -1
        self.user_adj: torch.Tensor | None = None
        self.user_adj_t: torch.Tensor | None = None

    def pre_epoch(self, epoch: int) -> None:
        """Resample each user's co-users (only users with fewer than `user_neighbours` change)."""
        self.user_graph_seed.fill_(int(torch.randint(0, 2**62, (1,))))
        self._user_graph()

    def _user_graph(self) -> None:
        seed = int(self.user_graph_seed)
        if seed < 0:          # never sampled (a model built for evaluation only)
            seed = 0
        if self.user_adj is None or seed != self._built_seed:
            rng = np.random.default_rng(seed)
            index, counts = sample_user_neighbours(self.cooccurrence, self.config.user_neighbours, rng)
            self.user_adj, self.user_adj_t = neighbour_weight_tensors(index, counts, self.adj.device)
            self._built_seed = seed

    def _modality_rep(self, modality: str) -> torch.Tensor:
        items = self.projection[modality](getattr(self, f"features_{modality}"))
        x = F.normalize(torch.cat([self.preference[modality], items]))
        h = sparse_mm(self.adj, x)
        return x + h + sparse_mm(self.adj, h)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        # MMRec reuses the last training batch's result (one step stale); this recomputes it.
        self._user_graph()
        reps = [self._modality_rep(m) for m in self.modalities]
        total = sum(reps)
        items = total[self.n_users:]
        if len(reps) == 1:
            users = total[: self.n_users]
        else:
            slots = torch.stack([total[: self.n_users]] + [r[: self.n_users] for r in reps[1:]], dim=2)
            users = (slots @ self.user_weight).squeeze(2)
        users = users + sparse_mm(self.user_adj, users, self.user_adj_t)
        return users, items

    def loss(self, batch: Batch) -> torch.Tensor:
        users, items = self.final_embeddings()
        u = users[batch.users]
        diff = (u * items[batch.pos_items]).sum(1) - (u * items[batch.neg_items]).sum(1)
        loss = -F.logsigmoid(diff).mean() / math.log(2.0)      # MMRec's log₂
        reg = sum(p[batch.users].pow(2).mean() for p in self.preference.values())
        reg = reg + self.user_weight.pow(2).mean() + self.item_weight.pow(2).mean()
        return loss + self.config.reg_weight * reg
