import numpy as np
import pytest
import scipy.sparse as sp
import torch

from raymmrec.recsys.graphs import (build_knn_graph, knn_graph_scipy, lightgcn_propagate, normalized_adjacency,
                                    sparse_mm, to_scipy_csr, to_torch_csr)


def _dense_knn(x: np.ndarray, k: int, weighted: bool) -> np.ndarray:
    """The dense construction MMRec uses: full cosine matrix, top-k per row, normalised with row degrees."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn @ xn.T
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    a = np.zeros_like(sim)
    rows = np.arange(len(x))[:, None]
    a[rows, top] = sim[rows, top] if weighted else 1.0
    deg = a.sum(1) + (0.0 if weighted else 1e-7)
    return a / np.sqrt(deg)[:, None] / np.sqrt(deg)[None, :]


@pytest.mark.parametrize("weighted", [False, True])
def test_blockwise_knn_equals_dense(weighted):
    x = np.random.default_rng(0).standard_normal((53, 12)).astype(np.float32)
    got = knn_graph_scipy(x, k=6, block_rows=8, weighted=weighted)
    assert got.nnz == 53 * 6
    assert np.array_equal(np.diff(got.indptr), np.full(53, 6))
    assert np.all(got.diagonal() > 0)                    # each item is its own nearest neighbour
    np.testing.assert_allclose(got.toarray(), _dense_knn(x, 6, weighted), rtol=1e-5, atol=1e-6)


def test_knn_bin_values_are_one_over_k_and_torch_csr():
    x = np.random.default_rng(1).standard_normal((40, 5)).astype(np.float32)
    g = build_knn_graph(x, k=10, block_rows=16)
    assert g.layout == torch.sparse_csr and g.shape == (40, 40)
    np.testing.assert_allclose(g.values().numpy(), 0.1, rtol=1e-5)
    assert not np.allclose(to_scipy_csr(g).toarray(), to_scipy_csr(g).toarray().T)   # not symmetrised


def test_normalized_adjacencies_match_their_formulas():
    r = sp.csr_matrix(np.array([[1, 0, 2], [0, 0, 1], [0, 0, 0]], dtype=np.float32))   # a count of 2: binary edge
    a = np.block([[np.zeros((3, 3)), (r.toarray() > 0)], [(r.toarray() > 0).T, np.zeros((3, 3))]])
    deg = a.sum(1)
    sym = a / np.sqrt(deg + 1e-7)[:, None] / np.sqrt(deg + 1e-7)[None, :]
    np.testing.assert_allclose(normalized_adjacency(r, "sym").toarray(), sym, rtol=1e-6)
    with np.errstate(divide="ignore"):
        inv = np.where(deg > 0, deg ** -0.5, 0.0)
    np.testing.assert_allclose(normalized_adjacency(r, "sym_prime").toarray(), inv[:, None] * a * inv[None, :], rtol=1e-6)
    rw = normalized_adjacency(r, "rw_self_loop").toarray()
    np.testing.assert_allclose(rw, (a + np.eye(6)) / (deg + 1)[:, None], rtol=1e-6)


def test_sparse_mm_gradients_match_dense_for_a_non_symmetric_matrix():
    rng = np.random.default_rng(2)
    m = sp.random(30, 30, density=0.2, random_state=3, format="csr", dtype=np.float32)
    x = torch.tensor(rng.standard_normal((30, 4)), dtype=torch.float32, requires_grad=True)
    w = torch.tensor(rng.standard_normal((30, 4)), dtype=torch.float32)
    (sparse_mm(to_torch_csr(m), x, to_torch_csr(m.T)) * w).sum().backward()
    dense_x = x.detach().clone().requires_grad_(True)
    ((torch.from_numpy(m.toarray()) @ dense_x) * w).sum().backward()
    torch.testing.assert_close(x.grad, dense_x.grad)


def test_lightgcn_propagate_is_the_layer_mean():
    r = sp.random(8, 5, density=0.4, random_state=0, format="csr", dtype=np.float32)
    adj = normalized_adjacency(r, "sym")
    e0 = torch.randn(13, 3)
    dense = torch.from_numpy(adj.toarray())
    want = (e0 + dense @ e0 + dense @ dense @ e0) / 3
    torch.testing.assert_close(lightgcn_propagate(to_torch_csr(adj), e0, 2), want)
