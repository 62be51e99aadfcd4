"""Sparse graphs of the backbones: normalised user–item adjacencies, blockwise item kNN graphs, propagation."""
from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

AdjacencyNorm = Literal["sym", "sym_prime", "rw_self_loop"]

# torch announces its CSR support as beta; the kernels used here are stable.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


def to_torch_csr(matrix: sp.spmatrix, device: torch.device | str = "cpu") -> torch.Tensor:
    """A scipy sparse matrix as a float32 torch sparse CSR tensor."""
    m = sp.csr_matrix(matrix, dtype=np.float32)
    m.sort_indices()
    # int32 indices take MKL's sparse kernel on CPU (~25% faster products here) and cuSPARSE's native type.
    index = np.int32 if max(m.nnz, *m.shape) < 2**31 else np.int64
    return torch.sparse_csr_tensor(
        torch.from_numpy(m.indptr.astype(index)), torch.from_numpy(m.indices.astype(index)),
        torch.from_numpy(m.data.astype(np.float32, copy=True)), size=m.shape, device=device, check_invariants=False)


def to_scipy_csr(matrix: torch.Tensor) -> sp.csr_matrix:
    """A torch sparse CSR tensor as a scipy CSR matrix."""
    return sp.csr_matrix((matrix.values().cpu().numpy(), matrix.col_indices().cpu().numpy(),
                          matrix.crow_indices().cpu().numpy()), shape=tuple(matrix.shape))


def bipartite_adjacency(interactions: sp.spmatrix) -> sp.csr_matrix:
    """Binary A = [[0, R], [Rᵀ, 0]] over users then items, from any user × item matrix."""
    r = sp.csr_matrix(interactions, dtype=np.float32, copy=True)
    r.data[:] = 1.0
    return sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)


def normalized_adjacency(interactions: sp.spmatrix, norm: AdjacencyNorm = "sym", eps: float = 1e-7) -> sp.csr_matrix:
    """The normalised user–item adjacency of ALGORITHMS.md §1.9 (G-sym, G-sym′ or G-rw+I), as scipy CSR.

    `sym`: D^-1/2 A D^-1/2 with D = nnz per row + eps (LightGCN, FREEDOM, BM3; SLMRec uses eps=1e-8).
    `sym_prime`: the same with D = row sums and 1/sqrt(0) → 0 (MGCN, AlignRec).
    `rw_self_loop`: D^-1 (A + I) with D = row sums of A + I (LATTICE).
    """
    a = bipartite_adjacency(interactions)
    if norm == "rw_self_loop":
        a = (a + sp.identity(a.shape[0], dtype=np.float32, format="csr")).tocsr()
        deg = np.asarray(a.sum(axis=1)).ravel()
        return (sp.diags((1.0 / deg).astype(np.float32)) @ a).tocsr()
    if norm == "sym":
        deg = np.diff(a.indptr).astype(np.float64) + eps
        inv = deg ** -0.5
    elif norm == "sym_prime":
        deg = np.asarray(a.sum(axis=1)).ravel().astype(np.float64)
        with np.errstate(divide="ignore"):
            inv = np.where(deg > 0, deg ** -0.5, 0.0)
    else:
        raise ValueError(f"unknown adjacency normalisation {norm!r}")
    d = sp.diags(inv.astype(np.float32))
    return (d @ a @ d).tocsr().astype(np.float32)


def cosine_topk(features: np.ndarray | torch.Tensor, k: int, block_rows: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(columns, cosine similarities), each n × k, of every row's k most similar rows (self included), by row block."""
    if isinstance(features, torch.Tensor):
        x = features.detach().to(torch.float32)
    else:
        with warnings.catch_warnings():   # object-store arrays are read-only; x is never written in place
            warnings.filterwarnings("ignore", message=".*not writable")
            x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    n = x.shape[0]
    if not 0 < k <= n:
        raise ValueError(f"k={k} must be in 1..{n} (the number of items)")
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cols = np.empty((n, k), dtype=np.int64)
    vals = np.empty((n, k), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, n, block_rows):
            sim = x[start:start + block_rows] @ x.T
            top_val, top_idx = torch.topk(sim, k, dim=1)
            cols[start:start + len(sim)] = top_idx.cpu().numpy()
            vals[start:start + len(sim)] = top_val.cpu().numpy()
    return cols, vals


def knn_from_topk(cols: np.ndarray, vals: np.ndarray, weighted: bool = False) -> sp.csr_matrix:
    """The n × n top-k graph of `cosine_topk`'s output, normalised as KNN-bin or (when `weighted`) KNN-w."""
    n, k = cols.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols, vals = cols.ravel().astype(np.int64, copy=False), vals.ravel()
    if weighted:
        # KNN-w: cosine weights, row sums as degrees on both sides, 1/sqrt(0) → 0 (no epsilon).
        deg = np.bincount(rows, weights=vals, minlength=n)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(deg > 0, deg ** -0.5, 0.0)
        data = inv[rows] * vals * inv[cols]
    else:
        # KNN-bin: weight 1, degree k + 1e-7 for every row (MMRec's normalised Laplacian of the top-k mask).
        inv = (np.bincount(rows, minlength=n) + 1e-7) ** -0.5
        data = inv[rows] * inv[cols]
    return sp.csr_matrix((data.astype(np.float32), (rows, cols)), shape=(n, n))


def knn_graph_scipy(features: np.ndarray | torch.Tensor, k: int, block_rows: int = 2048,
                    weighted: bool = False) -> sp.csr_matrix:
    """Row-wise cosine top-k graph (self included), normalised as KNN-bin or KNN-w; computed in row blocks."""
    return knn_from_topk(*cosine_topk(features, k, block_rows), weighted=weighted)


def build_knn_graph(features: np.ndarray | torch.Tensor, k: int, block_rows: int = 2048,
                    weighted: bool = False) -> torch.Tensor:
    """Blockwise cosine top-k item graph (KNN-bin, or KNN-w when `weighted`) as a torch sparse CSR tensor."""
    return to_torch_csr(knn_graph_scipy(features, k, block_rows, weighted))


class _SparseMM(torch.autograd.Function):
    """adj @ x whose backward uses a precomputed adjᵀ (torch would rebuild the transpose every call)."""

    @staticmethod
    def forward(ctx, adj: torch.Tensor, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj_t = adj_t
        return adj @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, ctx.adj_t @ grad


def sparse_mm(adj: torch.Tensor, x: torch.Tensor, adj_t: torch.Tensor | None = None) -> torch.Tensor:
    """adj @ x for a torch sparse CSR `adj`; pass `adj_t` (its transpose) unless adj is symmetric."""
    return _SparseMM.apply(adj, adj if adj_t is None else adj_t, x)


def lightgcn_propagate(adj: torch.Tensor, ego: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN readout: mean of E⁰..Eᴸ with Eˡ⁺¹ = Â Eˡ, for a symmetric sparse CSR Â."""
    total, layer = ego, ego
    for _ in range(n_layers):
        layer = sparse_mm(adj, layer)
        total = total + layer
    return total / (n_layers + 1)
