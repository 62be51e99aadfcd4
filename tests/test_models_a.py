"""MMGCN, GRCN, DualGNN, SLMRec, MMGCL: training on planted data, any modalities, sparse graphs, exact ops."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from raymmrec.errors import ConfigError, DataError
from raymmrec.recsys.edge_weighted_graph import EdgeWeightedGraph
from raymmrec.recsys.graphs import bipartite_adjacency, lightgcn_propagate, to_scipy_csr
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.modal_branches import apply_weight_decay, mmrec_modality_order, shared_user_lightgcn
from raymmrec.recsys.models.mmgcl import EdgeDropout
from raymmrec.recsys.models.mmgcn import mean_adjacency
from raymmrec.recsys.registry import build_model
from raymmrec.recsys.sampling import BPRSampler
from raymmrec.recsys.user_graph import neighbour_weight_matrix, sample_user_neighbours, user_cooccurrence_topk
from recsys_planted import assert_checkpoint_round_trip, assert_learns, planted, tiny_data

MODELS = ["mmgcn", "grcn", "dualgnn", "slmrec", "mmgcl"]


@pytest.mark.parametrize("name", MODELS)
def test_loss_falls_and_beats_popularity(name):
    assert_learns(name, epochs=8, margin=0.05)


def _with_features(features: dict[str, np.ndarray]) -> InteractionData:
    p = planted()
    return InteractionData.from_arrays(p.users, p.items, p.splits, p.n_users, p.n_items, features)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("modalities", [("text", "image"), ("text",), ("unified",)])
def test_forward_with_any_modalities(name, modalities):
    feats = planted().features
    dims = {"text": 16, "image": 24, "unified": 40}
    rng = np.random.default_rng(0)
    data = _with_features({m: feats[m] if m in feats else rng.standard_normal((planted().n_items, dims[m]),
                                                                              dtype=np.float32) for m in modalities})
    model = build_model(name, {}, data)
    model.train()
    model.pre_epoch(1)
    batch = next(BPRSampler(data, batch_size=32, negatives=model.uses_negatives).epoch())
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    scores = model.full_scores(torch.arange(7))
    assert scores.shape == (7, data.n_items) and torch.isfinite(scores).all()


@pytest.mark.parametrize("name", MODELS)
def test_models_refuse_data_without_features(name):
    p = planted()
    with pytest.raises(DataError, match=f"model '{name}' needs item features"):
        build_model(name, {}, InteractionData.from_arrays(p.users, p.items, p.splits))


def test_mmrec_modality_order_puts_image_first_and_text_last():
    assert mmrec_modality_order(["text", "image"]) == ["image", "text"]
    assert mmrec_modality_order(["text", "audio", "image"]) == ["image", "audio", "text"]
    assert mmrec_modality_order(["unified"]) == ["unified"]


def test_mmgcn_mean_graph_and_untrained_tables():
    data = tiny_data()
    adj = mean_adjacency(data.train)
    has = np.diff(adj.indptr) > 0
    np.testing.assert_allclose(np.asarray(adj.sum(1)).ravel()[has], 1.0, rtol=1e-6)
    assert adj.nnz == 2 * data.train.nnz
    model = build_model("mmgcn", {}, data)
    params = dict(model.named_parameters())
    assert not any("preference" in k or "id_embedding" in k for k in params)
    assert model.gcns["image"].projection is not None and model.gcns["text"].projection is None   # MMRec's v / t
    assert model.gcns["text"].preference.shape == (data.n_users, 16)
    assert len(model.gcns["text"].conv) == 3


def _dense_pattern(graph: EdgeWeightedGraph, values: torch.Tensor) -> torch.Tensor:
    dense = torch.zeros(graph.shape, dtype=values.dtype)
    return dense.index_put((graph.row, graph.col), values)


def test_edge_weighted_graph_matches_dense_attention_and_gradients():
    rng = np.random.default_rng(0)
    r = sp.random(12, 9, density=0.3, format="csr", random_state=1)
    graph = EdgeWeightedGraph(bipartite_adjacency(r))
    n = graph.shape[0]
    x = torch.tensor(rng.standard_normal((n, 5)), requires_grad=True)
    conf = torch.tensor(rng.standard_normal(graph.nnz), requires_grad=True)

    def sparse_path():
        alpha = graph.softmax(graph.edge_dot(x, x))
        w = torch.relu(alpha * conf)
        return (x + graph.aggregate(alpha, x)).sin().sum() + graph.aggregate(w, graph.aggregate(w, x)).pow(2).sum()

    def dense_path():
        mask = _dense_pattern(graph, torch.ones(graph.nnz, dtype=torch.float64)) > 0
        scores = (x @ x.T).masked_fill(~mask, -torch.inf)
        alpha = torch.nan_to_num(torch.softmax(scores, dim=1))      # rows without edges → 0
        w = torch.relu(alpha * _dense_pattern(graph, conf))
        return (x + alpha @ x).sin().sum() + (w @ (w @ x)).pow(2).sum()

    got = sparse_path()
    gx, gc = torch.autograd.grad(got, (x, conf))
    want = dense_path()
    wx, wc = torch.autograd.grad(want, (x, conf))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(gx, wx)
    torch.testing.assert_close(gc, wc)
    alpha = graph.softmax(graph.edge_dot(x, x)).detach()
    sums = torch.zeros(n, dtype=alpha.dtype).index_add(0, graph.row, alpha)
    torch.testing.assert_close(sums[graph.crow.diff() > 0], torch.ones(int((graph.crow.diff() > 0).sum()), dtype=sums.dtype))


def test_grcn_edge_weights_use_the_source_nodes_confidence():
    data = tiny_data()
    model = build_model("grcn", {}, data)
    g = model.graph
    assert g.nnz == 2 * data.train.nnz
    users_to_items = g.col < data.n_users
    assert torch.all(g.row[users_to_items] >= data.n_users)   # messages from users arrive at items


def test_user_cooccurrence_topk_matches_dense_reference():
    data = tiny_data()
    r = (data.train > 0).astype(np.float64)
    dense = (r @ r.T).toarray()
    np.fill_diagonal(dense, 0)
    k = 7
    graph = user_cooccurrence_topk(data.train, k=k, max_products=500)   # forces many row blocks
    for u in range(data.n_users):
        nz = np.flatnonzero(dense[u])
        order = nz[np.lexsort((nz, -dense[u, nz]))][:k]
        got = graph.indices[graph.indptr[u]:graph.indptr[u + 1]]
        np.testing.assert_array_equal(got, order)
        np.testing.assert_array_equal(graph.data[graph.indptr[u]:graph.indptr[u + 1]], dense[u, order])


def test_user_neighbour_sampling_pads_from_own_co_users():
    graph = sp.csr_matrix(np.array([[0, 3, 1, 2, 5], [4, 0, 0, 0, 0], [0, 0, 0, 0, 0],
                                    [2, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=np.float32))
    # rows sorted by count as user_cooccurrence_topk emits them
    rows = []
    for u in range(5):
        cols = np.flatnonzero(graph[u].toarray())
        cols = cols[np.lexsort((cols, -graph[u].toarray()[0, cols]))]
        rows.append((cols, graph[u].toarray()[0, cols]))
    g = sp.csr_matrix((np.concatenate([v for _, v in rows]), np.concatenate([c for c, _ in rows]),
                       np.concatenate([[0], np.cumsum([len(c) for c, _ in rows])])), shape=(5, 5))
    index, counts = sample_user_neighbours(g, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(index[0], [4, 1, 3])                     # ≥ k co-users: the first k
    assert set(index[1]) == {0} and set(index[3]) <= {0, 1} and index[3][:2].tolist() == [0, 1]
    np.testing.assert_array_equal(counts[2], 0)                            # no co-users
    w = neighbour_weight_matrix(index, counts).toarray()
    np.testing.assert_allclose(w.sum(1), [1, 1, 0, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(w[0, [4, 1, 3]], torch.softmax(torch.tensor([5.0, 3, 2]), 0).numpy(), rtol=1e-6)


def test_dualgnn_user_graph_has_k_neighbours_per_user():
    data = tiny_data()
    model = build_model("dualgnn", {"user_topk": 20, "user_neighbours": 5}, data)
    assert np.diff(model.cooccurrence.indptr).max() <= 20
    model.pre_epoch(1)
    w = to_scipy_csr(model.user_adj)
    assert np.diff(w.indptr).max() <= 5 and w.shape == (data.n_users, data.n_users)
    has = np.diff(model.cooccurrence.indptr) > 0
    np.testing.assert_allclose(np.asarray(w.sum(1)).ravel()[has], 1.0, rtol=1e-5)


def test_shared_user_lightgcn_equals_separate_propagations():
    data = tiny_data()
    adj = data.adjacency("sym")
    torch.manual_seed(0)
    users = torch.randn(data.n_users, 4)
    items = [torch.randn(data.n_items, 4) for _ in range(3)]
    for (u, i), it in zip(shared_user_lightgcn(adj, users, items, 3), items):
        want = lightgcn_propagate(adj, torch.cat([users, it]), 3)
        torch.testing.assert_close(torch.cat([u, i]), want)


def test_model_weight_decay_equals_adam_weight_decay():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    apply_weight_decay(a, 1e-2)
    opt_a = torch.optim.Adam(a.parameters(), lr=0.1)
    opt_b = torch.optim.Adam(b.parameters(), lr=0.1, weight_decay=1e-2)
    x = torch.randn(8, 4)
    for _ in range(3):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight)


def test_mmgcl_edge_dropout_keeps_symmetric_normalised_subgraph():
    data = tiny_data()
    model = build_model("mmgcl", {"edge_dropout": 0.3}, data)
    torch.manual_seed(0)
    adj = to_scipy_csr(model.edge_dropout.sample(0.3))
    n_edges = data.train.nnz
    assert adj.nnz == 2 * int(n_edges * 0.7)
    assert abs(adj - adj.T).max() < 1e-7
    deg = np.diff(adj.indptr)
    rows = np.repeat(np.arange(adj.shape[0]), deg)
    np.testing.assert_allclose(adj.data, 1 / np.sqrt(deg[rows] * deg[adj.indices]), rtol=1e-6)
    assert set(zip(*adj.nonzero())) <= set(zip(*to_scipy_csr(model.adj).nonzero()))


def test_mmgcl_rejects_mask_probabilities_of_the_wrong_length():
    with pytest.raises(ConfigError, match="mmgcl.mask_p: 3 values for 2 modalities"):
        build_model("mmgcl", {"mask_p": [0.4, 0.4, 0.2]}, tiny_data())


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_round_trip_reproduces_scores(name):
    assert_checkpoint_round_trip(name)
