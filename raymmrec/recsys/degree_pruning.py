"""Degree-sensitive edge pruning of the user–item graph (FREEDOM, PGL): each epoch keeps a share of the
training edges, drawn without replacement ∝ 1/sqrt(d_u d_i), and renormalises the kept graph."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def training_edges(train: sp.spmatrix) -> torch.Tensor:
    """The 2 × E (user, item) index of the stored training interactions."""
    coo = sp.coo_matrix(train)
    return torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))


def degree_weights(edges: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """1/sqrt(d_u d_i) per edge, degrees counted over `edges` (+1e-7, as MMRec)."""
    du = torch.bincount(edges[0], minlength=n_users).to(torch.float32) + 1e-7
    di = torch.bincount(edges[1], minlength=n_items).to(torch.float32) + 1e-7
    return du.pow(-0.5)[edges[0]] * di.pow(-0.5)[edges[1]]


def symmetric_adjacency(edges: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """The (users + items)² sparse CSR graph of user–item `edges`, both directions, degree-normalised over them."""
    values = degree_weights(edges, n_users, n_items)
    users, items = edges[0], edges[1] + n_users
    n = n_users + n_items
    coo = torch.sparse_coo_tensor(torch.stack([torch.cat([users, items]), torch.cat([items, users])]),
                                  torch.cat([values, values]), (n, n), check_invariants=False)
    return coo.coalesce().to_sparse_csr()


def pruned_adjacency(edges: torch.Tensor, weights: torch.Tensor, keep: int, n_users: int,
                     n_items: int) -> torch.Tensor:
    """`keep` edges drawn without replacement ∝ `weights` (torch's RNG), as a renormalised symmetric graph."""
    kept = edges[:, torch.multinomial(weights, keep, replacement=False)]
    return symmetric_adjacency(kept, n_users, n_items)
