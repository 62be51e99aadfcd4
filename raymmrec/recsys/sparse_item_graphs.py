"""Item graphs as sparse edge lists: blockwise cosine top-k and LATTICE's differentiable learned kNN graph.

Nothing here holds an n_items × n_items matrix: similarities are computed one row block at a time and
only each row's top-k survives, so a 63k-item graph costs O(n·k) memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from raymmrec.recsys.graphs import AdjacencyNorm, cosine_topk_tensors, normalized_adjacency, to_torch_csr


@dataclass
class EdgeGraph:
    """A sparse n × n matrix as (rows, cols, values); values may carry gradient."""

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    n: int

    def propagate(self, x: torch.Tensor) -> torch.Tensor:
        """self @ x, differentiable in both the values and x (gather–scale–scatter)."""
        return x.new_zeros(self.n, x.shape[1]).index_add(0, self.rows, self.values.unsqueeze(1) * x[self.cols])

    def to_scipy(self) -> sp.csr_matrix:
        """The detached matrix as scipy CSR (duplicate entries summed)."""
        return sp.csr_matrix((self.values.detach().cpu().numpy(), (self.rows.cpu().numpy(), self.cols.cpu().numpy())),
                             shape=(self.n, self.n))

    def row_counts(self) -> np.ndarray:
        """Distinct stored columns per row."""
        return np.diff(self.to_scipy().indptr)


def learned_knn_graph(features: list[torch.Tensor], weights: torch.Tensor, k: int,
                      block_rows: int = 2048) -> EdgeGraph:
    """LATTICE's learned graph: Σ_m w_m · kNN_k(cos(X_m)) with cosine values kept, then D^-1/2 S D^-1/2 (row sums).

    The top-k choice is made without gradient, block by block; the kept cosines are recomputed from the
    features so gradient reaches them (and the weights) exactly as through MMRec's dense topk + scatter.
    """
    rows, cols, vals = [], [], []
    for w, x in zip(weights, features):
        idx = cosine_topk_tensors(x, k, block_rows)[0]
        r = torch.arange(x.shape[0], device=x.device).repeat_interleave(k)
        c = idx.reshape(-1)
        xn = F.normalize(x, dim=1)
        rows.append(r)
        cols.append(c)
        vals.append(w * (xn[r] * xn[c]).sum(dim=1))
    rows_t, cols_t, vals_t = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    n = features[0].shape[0]
    deg = vals_t.new_zeros(n).index_add(0, rows_t, vals_t)
    # 1/sqrt(0) → 0 as in MMRec; the clamp keeps the unused branch's gradient finite.
    inv = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
    return EdgeGraph(rows_t, cols_t, inv[rows_t] * vals_t * inv[cols_t], n)


def csr_pair(matrix: sp.spmatrix) -> tuple[torch.Tensor, torch.Tensor]:
    """A scipy matrix and its transpose as torch sparse CSR (the transpose serves the backward pass)."""
    return to_torch_csr(matrix), to_torch_csr(sp.csr_matrix(matrix).T)


def register_csr_pair(module: torch.nn.Module, name: str, matrix: sp.spmatrix) -> None:
    """Register `matrix` as buffer `name` and its transpose as `name`_t (torch sparse CSR, not checkpointed)."""
    forward, transposed = csr_pair(matrix)
    module.register_buffer(name, forward, persistent=False)
    module.register_buffer(f"{name}_t", transposed, persistent=False)


def user_item_block(interactions: sp.spmatrix, norm: AdjacencyNorm = "sym_prime") -> sp.csr_matrix:
    """The users × items block R̂ of the normalised bipartite adjacency (MGCN's / AlignRec's user readout)."""
    n_users = interactions.shape[0]
    return normalized_adjacency(interactions, norm)[:n_users, n_users:].tocsr()
