"""MMGCL (Yi et al., SIGIR 2022, "Multi-modal Graph Contrastive Learning for Micro-video Recommendation").

Not in MMRec or ALGORITHMS.md. Read from the paper (abstract, and P-LMM §4.1.3 which reuses it as a
backbone) and the authors' code (github.com/zxy-ml84/MMGCL, models/mmgcl.py, configs/model/MMGCL.yaml):

- Encoder (as the authors' code): per modality m̄ = W_m nrm(f_m) + b; LightGCN (3 layers, mean readout)
  over [E_u; E_i] and [E_u; m̄] on D^-1/2 A D^-1/2, one user table shared; readouts
  user = W_U[i_u; m_u…], item = W_I[i_i; m_i…]; score = inner product; BPR −log(1e-5 + σ(Δ)).
- Two augmented views of every batch user and positive item, following the paper:
  modality edge dropout (view 1: all branches on a graph keeping ⌊(1−ρ)|E|⌋ random training edges,
  redrawn every batch as in the code) and modality masking (view 2: one modality, drawn with
  probabilities `mask_p`, has its item input replaced by a random, untrained embedding; the rest
  is the ordinary encoder).
- Self-supervised loss, users and items each as anchors (the paper's two contrastive terms):
  InfoNCE between a node's two views with the batch's other nodes as negatives; the item side adds
  the paper's negative sample — the positive item's masked view with one modality (drawn uniformly)
  swapped for that modality of the batch's sampled negative item, so ignoring any modality cannot
  separate it. Total BPR + ssl_alpha · SSL, Adam weight decay 1e-4 (the code's yaml; its `reg` is unused).
- Where the code departs from the paper it is not followed: it contrasts users with items of the
  *same* view twice (so the masking view and the computed hard-negative term never reach the loss),
  and its "text" masking branch encodes the image input. Hyper-parameters are the code's yaml
  (α 0.4, τ 0.2, ρ 0.05, mask_p 0.4/0.4/0.2 for image/text/audio); the code publishes no grid, so the
  search space around them is ours (lr: P-LMM's grid).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.errors import ConfigError
from raymmrec.recsys.graphs import lightgcn_propagate
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.losses import dot_scores
from raymmrec.recsys.modal_branches import (apply_weight_decay, info_nce, mmrec_modality_order,
                                            shared_user_lightgcn, xavier_linear)
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch


@dataclass
class MMGCLConfig(ModelConfig):
    """MMGCL hyper-parameters; mask_p lists masking probabilities in MMRec's modality order (image first,
    text last; empty: uniform), normalised over the modalities present."""

    n_layers: int = 3
    ssl_alpha: float = 0.4
    ssl_temp: float = 0.2
    edge_dropout: float = 0.05
    mask_p: list[float] = field(default_factory=list)
    weight_decay: float = 1e-4

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"ssl_alpha": {"grid": [0.01, 0.05, 0.1, 0.4, 1.0]}, "ssl_temp": {"grid": [0.1, 0.2, 0.5]},
                "edge_dropout": {"grid": [0.05, 0.1, 0.2]}}


class EdgeDropout(nn.Module):
    """Random ⌊(1−ρ)|E|⌋-edge subgraphs of a symmetric user–item adjacency, sym-normalised, built without sorting."""

    def __init__(self, adjacency: torch.Tensor, n_users: int) -> None:
        super().__init__()
        crow, col = adjacency.crow_indices().long(), adjacency.col_indices().long()
        row = torch.repeat_interleave(torch.arange(len(crow) - 1, device=crow.device), crow.diff())
        # Both directions of an undirected edge share one id: its rank among the user → item entries.
        forward = row < n_users
        self.n_nodes = adjacency.shape[0]
        self.n_edges = int(forward.sum())
        keys = row[forward] * self.n_nodes + col[forward]           # ascending: CSR order
        edge_of_entry = torch.empty_like(row)
        edge_of_entry[forward] = torch.arange(self.n_edges, device=row.device)
        edge_of_entry[~forward] = torch.searchsorted(keys, col[~forward] * self.n_nodes + row[~forward])
        for name, value in (("row", row), ("col", col), ("edge_of_entry", edge_of_entry)):
            self.register_buffer(name, value, persistent=False)

    def sample(self, rate: float) -> torch.Tensor:
        """D^-1/2 A' D^-1/2 of a fresh random subgraph A' (degrees of the kept edges, 1/sqrt(0) → 0), as CSR."""
        device = self.row.device
        keep_edges = torch.zeros(self.n_edges, dtype=torch.bool, device=device)
        keep_edges[torch.randperm(self.n_edges, device=device)[: int(self.n_edges * (1.0 - rate))]] = True
        keep = keep_edges[self.edge_of_entry]
        row, col = self.row[keep], self.col[keep]
        counts = torch.bincount(row, minlength=self.n_nodes)
        inv = counts.to(torch.float32).pow(-0.5)
        inv[counts == 0] = 0.0
        crow = torch.zeros(self.n_nodes + 1, dtype=torch.int64, device=device)
        crow[1:] = torch.cumsum(counts, 0)
        return torch.sparse_csr_tensor(crow, col, inv[row] * inv[col], size=(self.n_nodes, self.n_nodes),
                                       check_invariants=False)


@register_model("mmgcl")
class MMGCL(Backbone):
    """Modality LightGCN branches trained with BPR plus edge-dropout / modality-masking contrast."""

    Config = MMGCLConfig
    # P-LMM's (WSDM'24) lr grid for its MMGCL runs: a trainer field, tuned alongside the config's own space.
    trainer_search_space: ClassVar[dict[str, dict[str, list]]] = {"lr": {"grid": [1e-5, 3e-5, 5e-5, 1e-4, 1e-3]}}
    needs_features = True

    def __init__(self, config: MMGCLConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        self.modalities = mmrec_modality_order(data.features)
        if config.mask_p and len(config.mask_p) != len(self.modalities):
            raise ConfigError(f"mmgcl.mask_p: {len(config.mask_p)} values for {len(self.modalities)} modalities "
                              f"({', '.join(self.modalities)}); give one per modality in that order, or [] for uniform")
        p = np.asarray(config.mask_p or [1.0] * len(self.modalities), dtype=np.float64)
        if (p < 0).any() or p.sum() <= 0:
            raise ConfigError(f"mmgcl.mask_p: expected non-negative values with a positive sum, got {config.mask_p}")
        self.register_buffer("mask_p", torch.as_tensor(p / p.sum(), dtype=torch.float32), persistent=False)
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.dense = nn.ModuleDict()
        for m in self.modalities:
            feats = F.normalize(torch.from_numpy(data.features[m]))
            self.register_buffer(f"features_{m}", feats, persistent=False)
            # The random item input that replaces this modality in the masked view (never trained).
            self.register_buffer(f"mask_{m}", nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
            self.dense[m] = xavier_linear(feats.shape[1], d)
        width = d * (len(self.modalities) + 1)
        self.read_user = xavier_linear(width, d)
        self.read_item = xavier_linear(width, d)
        self.register_buffer("adj", data.adjacency("sym_prime"), persistent=False)
        self.edge_dropout = EdgeDropout(self.adj, self.n_users)
        apply_weight_decay(self, config.weight_decay)

    def _inputs(self) -> list[torch.Tensor]:
        return [self.item_embedding] + [self.dense[m](getattr(self, f"features_{m}")) for m in self.modalities]

    def _read(self, branches, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.read_user(torch.cat([b[0][users] for b in branches], dim=1))
        i = self.read_item(torch.cat([b[1][items] for b in branches], dim=1))
        return u, i

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        branches = shared_user_lightgcn(self.adj, self.user_embedding, self._inputs(), self.config.n_layers)
        return (self.read_user(torch.cat([b[0] for b in branches], dim=1)),
                self.read_item(torch.cat([b[1] for b in branches], dim=1)))

    def _masked_view(self, branches):
        """The branches with one modality (drawn by mask_p) encoded from its random input instead."""
        k = int(torch.multinomial(self.mask_p, 1))
        m = self.modalities[k]
        ego = torch.cat([self.user_embedding, getattr(self, f"mask_{m}")])
        out = lightgcn_propagate(self.adj, ego, self.config.n_layers)
        masked = list(branches)
        masked[k + 1] = (out[: self.n_users], out[self.n_users:])
        return masked

    def ssl_loss(self, branches, inputs: list[torch.Tensor], batch: Batch) -> torch.Tensor:
        """InfoNCE between the edge-dropout and the modality-masking view, users and items as anchors;
        the item side adds the modality-swapped negative."""
        tau = self.config.ssl_temp
        dropped = shared_user_lightgcn(self.edge_dropout.sample(self.config.edge_dropout), self.user_embedding,
                                       inputs, self.config.n_layers)
        masked = self._masked_view(branches)
        u1, i1 = (F.normalize(z) for z in self._read(dropped, batch.users, batch.pos_items))
        u2, i2 = (F.normalize(z) for z in self._read(masked, batch.users, batch.pos_items))
        s = int(torch.randint(len(self.modalities), (1,))) + 1
        parts = [b[1][batch.neg_items if j == s else batch.pos_items] for j, b in enumerate(masked)]
        hard = F.normalize(self.read_item(torch.cat(parts, dim=1)))
        logits = torch.cat([i1 @ i2.T, dot_scores(i1, hard)[:, None]], dim=1) / tau
        item_loss = F.cross_entropy(logits, torch.arange(len(i1), device=logits.device))
        return info_nce(u1, u2, tau) + item_loss

    def loss(self, batch: Batch) -> torch.Tensor:
        inputs = self._inputs()
        branches = shared_user_lightgcn(self.adj, self.user_embedding, inputs, self.config.n_layers)
        u, pos = self._read(branches, batch.users, batch.pos_items)
        neg = self.read_item(torch.cat([b[1][batch.neg_items] for b in branches], dim=1))
        bpr = -torch.log(1e-5 + torch.sigmoid(dot_scores(u, pos) - dot_scores(u, neg))).mean()
        return bpr + self.config.ssl_alpha * self.ssl_loss(branches, inputs, batch)
