"""A fixed directed graph whose edge weights are computed each step (attention scores, learned confidences).

Three differentiable operations on it, all on torch sparse CSR: per-edge dot products of node vectors
(SDDMM), softmax over the incoming edges of each node, and aggregation with per-edge weights. The
backward of each is again a sparse product, so nothing E × d is kept for autograd (GRCN's attention
over 3.4M directed edges at Electronics size).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

import raymmrec.recsys.graphs  # noqa: F401  (silences torch's CSR beta warning)


class EdgeWeightedGraph(nn.Module):
    """The sparsity pattern of `adjacency` (row = target, column = source) and its transpose, as buffers."""

    def __init__(self, adjacency: sp.spmatrix) -> None:
        super().__init__()
        a = sp.csr_matrix(adjacency, dtype=np.float32)
        a.sort_indices()
        self.shape = a.shape
        self.nnz = a.nnz
        # Entry e of the CSR order sits at position perm[e'] in the CSR order of the transpose.
        ids = sp.csr_matrix((np.arange(1, a.nnz + 1, dtype=np.float64), a.indices, a.indptr), shape=a.shape)
        t = ids.T.tocsr()
        t.sort_indices()
        crow = torch.from_numpy(a.indptr.astype(np.int64))
        for name, value in (("crow", crow), ("col", torch.from_numpy(a.indices.astype(np.int64))),
                            ("row", torch.repeat_interleave(torch.arange(a.shape[0]), crow.diff())),
                            ("t_crow", torch.from_numpy(t.indptr.astype(np.int64))),
                            ("t_col", torch.from_numpy(t.indices.astype(np.int64))),
                            ("t_perm", torch.from_numpy(t.data.astype(np.int64) - 1))):
            self.register_buffer(name, value, persistent=False)

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The graph as a sparse CSR tensor with `values` (one per edge, CSR order)."""
        return torch.sparse_csr_tensor(self.crow, self.col, values.contiguous(), size=self.shape, check_invariants=False)

    def transposed(self, values: torch.Tensor) -> torch.Tensor:
        """The transpose as a sparse CSR tensor carrying the same per-edge `values`."""
        return torch.sparse_csr_tensor(self.t_crow, self.t_col, values[self.t_perm], size=self.shape[::-1],
                                       check_invariants=False)

    def edge_dot(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x[target_e] · y[source_e] for every edge e (differentiable in x and y)."""
        return _EdgeDot.apply(self, x, y)

    def aggregate(self, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Σ_e values_e · x[source_e] into each target (differentiable in values and x)."""
        return _Aggregate.apply(self, values, x)

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        """Softmax of the edge scores over the incoming edges of each target node."""
        n = self.shape[0]
        top = torch.full((n,), -torch.inf, dtype=scores.dtype, device=scores.device)
        top = top.scatter_reduce(0, self.row, scores.detach(), "amax", include_self=True)
        ex = torch.exp(scores - top[self.row])
        total = torch.zeros(n, dtype=scores.dtype, device=scores.device).index_add(0, self.row, ex)
        return ex / (total[self.row] + 1e-16)


def _sddmm(graph: EdgeWeightedGraph, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    pattern = graph.matrix(torch.zeros(graph.nnz, dtype=x.dtype, device=x.device))
    return torch.sparse.sampled_addmm(pattern, x.contiguous(), y.T.contiguous()).values()


class _EdgeDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, graph: EdgeWeightedGraph, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.graph = graph
        ctx.save_for_backward(x, y)
        return _sddmm(graph, x, y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, y = ctx.saved_tensors
        graph = ctx.graph
        grad_x = graph.matrix(grad) @ y if ctx.needs_input_grad[1] else None
        grad_y = graph.transposed(grad) @ x if ctx.needs_input_grad[2] else None
        return None, grad_x, grad_y


class _Aggregate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, graph: EdgeWeightedGraph, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.graph = graph
        ctx.save_for_backward(values, x)
        return graph.matrix(values) @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        values, x = ctx.saved_tensors
        graph = ctx.graph
        grad_values = _sddmm(graph, grad, x) if ctx.needs_input_grad[1] else None
        grad_x = graph.transposed(values) @ grad if ctx.needs_input_grad[2] else None
        return None, grad_values, grad_x
