"""DualGNN's user–user co-occurrence graph: top-k co-users from R·Rᵀ, built blockwise and sparse.

MMRec's preprocessing fills a dense n_users × n_users matrix with a Python pair loop (148 GB at
Electronics size). Here R·Rᵀ is computed one block of user rows at a time with scipy sparse, each
block sized by how many (user, co-user) products it can produce, and only each row's top k is kept.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from raymmrec.recsys.graphs import to_torch_csr


def user_cooccurrence_topk(train: sp.spmatrix, k: int = 200, max_products: int = 20_000_000,
                           max_rows: int = 8192) -> sp.csr_matrix:
    """Per user, the ≤ k other users sharing most training items (value = shared items), rows sorted by
    count descending then user id; a block of rows holds at most `max_products` partial products."""
    r = sp.csr_matrix(train, dtype=np.float32, copy=True)
    r.data[:] = 1.0
    rt = r.T.tocsr()
    n_users = r.shape[0]
    # Partial products each user row contributes to R·Rᵀ, accumulated to cut blocks.
    done = np.concatenate([[0.0], np.cumsum(r @ np.diff(rt.indptr).astype(np.float64))])
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    cols, vals = [], []
    start = 0
    while start < n_users:
        stop = max(start + 1, int(np.searchsorted(done, done[start] + max_products, side="right")) - 1)
        stop = min(stop, start + max_rows)
        rows, c, v = _block_topk(r[start:stop] @ rt, start, k)
        indptr[start + 1: stop + 1] = np.bincount(rows, minlength=stop - start)
        cols.append(c.astype(np.int32))
        vals.append(v.astype(np.float32))
        start = stop
    np.cumsum(indptr, out=indptr)
    return sp.csr_matrix((np.concatenate(vals), np.concatenate(cols), indptr), shape=(n_users, n_users))


def _block_topk(block: sp.csr_matrix, offset: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, co-user, count) of each block row's top k, ordered; O(nnz) selection, then a sort of ≤ k per row."""
    block.sort_indices()
    n_rows, n_users = block.shape
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(block.indptr))
    c, v = block.indices.astype(np.int64), np.rint(block.data).astype(np.int64)
    off = (c != rows + offset) & (v > 0)
    rows, c, v = rows[off], c[off], v[off]
    if len(v) == 0:
        return rows, c, v
    top_count = int(v.max()) + 1
    # at_least[r, t] = entries of row r with count ≥ t; threshold = the k-th largest count (0: keep all).
    hist = np.bincount(rows * top_count + v, minlength=n_rows * top_count).reshape(n_rows, top_count)
    at_least = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]
    threshold = (at_least[:, 1:] >= k).sum(axis=1)
    above = np.where(threshold + 1 < top_count,
                     at_least[np.arange(n_rows), np.minimum(threshold + 1, top_count - 1)], 0)
    keep = v > threshold[rows]
    tie = np.flatnonzero(v == threshold[rows])
    tie_rows = rows[tie]
    first = np.concatenate([[0], np.cumsum(np.bincount(tie_rows, minlength=n_rows))[:-1]])
    keep[tie] = np.arange(len(tie)) - first[tie_rows] < k - above[tie_rows]   # ties: lowest user ids first
    rows, c, v = rows[keep], c[keep], v[keep]
    # One int64 key orders the kept entries by (row, count descending, co-user).
    key = np.sort((rows * top_count + (top_count - 1 - v)) * n_users + c)
    rows, rest = np.divmod(key, top_count * n_users)
    v, c = np.divmod(rest, n_users)
    return rows, c, top_count - 1 - v


def sample_user_neighbours(graph: sp.csr_matrix, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """DualGNN's per-epoch neighbours: each user's first k co-users, padded MMRec's way when fewer.

    A user with n < k co-users appends k - n draws, each uniform over the list as it stands (earlier
    draws included); one with none gets index 0. Returns (n_users × k indices, their co-counts).
    """
    have = np.diff(graph.indptr)
    slots = np.minimum(np.arange(k)[None, :], np.maximum(have, 1)[:, None] - 1)
    for c in range(1, k):
        pad = (have > 0) & (have <= c)        # slot c is a padding draw over slots 0..c-1
        if pad.any():
            pick = np.floor(rng.random(int(pad.sum())) * c).astype(np.int64)
            slots[pad, c] = slots[pad, pick]
    none = have == 0
    flat = np.minimum(graph.indptr[:-1, None] + slots, max(graph.nnz - 1, 0))
    if graph.nnz == 0:
        return np.zeros((len(have), k), np.int64), np.zeros((len(have), k), np.float32)
    index = np.where(none[:, None], 0, graph.indices[flat]).astype(np.int64)
    counts = np.where(none[:, None], 0.0, graph.data[flat]).astype(np.float32)
    return index, counts


def neighbour_weight_matrix(index: np.ndarray, counts: np.ndarray) -> sp.csr_matrix:
    """Row u: softmax of u's k sampled co-counts on its sampled co-users (zero row for users with none)."""
    n_users, k = index.shape
    weights = torch.softmax(torch.from_numpy(counts), dim=1).numpy()
    weights[counts.sum(axis=1) == 0] = 0.0
    rows = np.repeat(np.arange(n_users), k)
    m = sp.csr_matrix((weights.ravel(), (rows, index.ravel())), shape=(n_users, n_users))
    m.sum_duplicates()
    return m


def neighbour_weight_tensors(index: np.ndarray, counts: np.ndarray,
                             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The neighbour weight matrix and its transpose as torch sparse CSR tensors."""
    m = neighbour_weight_matrix(index, counts)
    return to_torch_csr(m, device), to_torch_csr(m.T.tocsr(), device)
