"""Degree-sensitive edge pruning of the user–item graph (FREEDOM, LayerGCN, MMGCF, PGL): keep a share of the
training edges, drawn ∝ 1/sqrt(d_u d_i), and renormalise the kept graph symmetrically."""
from __future__ import annotations

import numpy as np
import torch

from raymmrec.recsys.interaction_data import InteractionData


def training_edges(data: InteractionData) -> torch.Tensor:
    """(2, E) user and item ids of the distinct training pairs, in the training matrix's COO order."""
    train = data.train.tocoo()
    return torch.from_numpy(np.stack([train.row, train.col]).astype(np.int64))


def degree_edge_weights(edges: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """1/sqrt(d_u d_i) per edge, degrees counted over `edges` (+1e-7, as MMRec)."""
    du = torch.bincount(edges[0], minlength=n_users).to(torch.float32) + 1e-7
    di = torch.bincount(edges[1], minlength=n_items).to(torch.float32) + 1e-7
    return du.pow(-0.5)[edges[0]] * di.pow(-0.5)[edges[1]]


def kept_edge_index(weights: torch.Tensor, share: float, uniform: bool = False) -> torch.Tensor:
    """Indices of ⌊E · share⌋ edges drawn without replacement, ∝ `weights` (or uniformly)."""
    keep = int(weights.shape[0] * share)
    if uniform:
        return torch.randperm(weights.shape[0], device=weights.device)[:keep]
    return torch.multinomial(weights, keep, replacement=False)


def pruned_adjacency(edges: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """The symmetric (users + items)² sparse CSR graph of `edges`, weighted 1/sqrt(d_u d_i) over these edges only."""
    values = degree_edge_weights(edges, n_users, n_items)
    users, items = edges[0], edges[1] + n_users
    n = n_users + n_items
    coo = torch.sparse_coo_tensor(torch.stack([torch.cat([users, items]), torch.cat([items, users])]),
                                  torch.cat([values, values]), (n, n), check_invariants=False)
    return coo.coalesce().to_sparse_csr()


class DegreePrunedGraph:
    """Mixin of a Backbone whose config has `dropout`: `norm_adj`, the training edges, and each epoch a
    `masked_adj` with that share of the edges pruned (FREEDOM, LayerGCN, MMGCF, PGL)."""

    n_users: int
    n_items: int

    def init_pruned_graph(self, data: InteractionData) -> None:
        """Register the full graph and the weighted edge list (call from __init__)."""
        self.register_buffer("norm_adj", data.adjacency("sym"), persistent=False)
        self.register_buffer("edges", training_edges(data), persistent=False)
        self.register_buffer("edge_weights", degree_edge_weights(self.edges, self.n_users, self.n_items),
                             persistent=False)
        self.masked_adj: torch.Tensor | None = None

    def pre_epoch(self, epoch: int) -> None:
        """Degree-sensitive pruning: keep ⌊|E|(1-dropout)⌋ edges drawn ∝ 1/sqrt(d_u d_i), renormalised."""
        self.prune_edges()

    def prune_edges(self, uniform: bool = False) -> None:
        """Draw this epoch's `masked_adj` (the full graph when dropout is 0)."""
        if self.config.dropout <= 0:
            self.masked_adj = self.norm_adj
            return
        index = kept_edge_index(self.edge_weights, 1.0 - self.config.dropout, uniform)
        self.masked_adj = pruned_adjacency(self.edges[:, index], self.n_users, self.n_items)

    def training_adj(self) -> torch.Tensor:
        """This epoch's pruned graph (drawn now if no epoch has started)."""
        if self.masked_adj is None:
            self.prune_edges()
        return self.masked_adj
