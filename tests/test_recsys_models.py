import numpy as np
import pytest
import torch

from raymmrec.errors import ConfigError, DataError
from raymmrec.recsys.graphs import to_scipy_csr
from raymmrec.recsys.losses import bpr_loss, dot_scores, emb_loss
from raymmrec.recsys.registry import build_model, get_model, model_names
from raymmrec.recsys.sampling import BPRSampler
from raymmrec.recsys.interaction_data import InteractionData
from recsys_planted import assert_learns, planted, tiny_data

CORE = ["bpr", "lightgcn", "vbpr", "freedom"]


@pytest.mark.parametrize("name", CORE)
def test_loss_falls_and_beats_popularity(name):
    assert_learns(name, epochs=15, margin=0.05)


def test_registry_lists_known_models_and_checks_configs():
    assert set(CORE) <= set(model_names())
    with pytest.raises(ConfigError, match="unknown model 'nope' \\(known models: .*bpr.*lightgcn"):
        get_model("nope")
    with pytest.raises(ConfigError, match="unknown config key 'lightgcn.layers'"):
        get_model("lightgcn").make_config({"layers": 3})
    for name in model_names():
        spec = get_model(name)
        space = spec.search_space()
        assert space, name
        # Every grid value is accepted by the config dataclass.
        for key, values in space.items():
            for v in next(iter(values.values())):
                spec.make_config({key: v})


@pytest.mark.parametrize("name", ["vbpr", "freedom"])
def test_content_models_refuse_data_without_features(name):
    p = planted()
    bare = InteractionData.from_arrays(p.users, p.items, p.splits)
    with pytest.raises(DataError, match=f"model '{name}' needs item features"):
        build_model(name, {}, bare)


def test_lightgcn_loss_equals_dense_formulation():
    data = tiny_data()
    model = build_model("lightgcn", {"n_layers": 2, "reg_weight": 0.1}, data)
    batch = next(BPRSampler(data, batch_size=64).epoch())
    adj = torch.from_numpy(to_scipy_csr(model.adj).toarray())
    e0 = torch.cat([model.user_embedding, model.item_embedding])
    out = (e0 + adj @ e0 + adj @ adj @ e0) / 3
    u, p, n = out[batch.users], out[model.n_users + batch.pos_items], out[model.n_users + batch.neg_items]
    reg = emb_loss(e0[batch.users], e0[model.n_users + batch.pos_items], e0[model.n_users + batch.neg_items])
    want = bpr_loss(dot_scores(u, p), dot_scores(u, n)) + 0.1 * reg
    torch.testing.assert_close(model.loss(batch), want)


@pytest.mark.parametrize("name", ["vbpr", "freedom"])
def test_batch_item_projection_gives_mmrecs_gradients(name):
    """Projecting only the batch's items must equal MMRec's projection of the whole feature table."""
    data = tiny_data()
    model = build_model(name, {"reg_weight": 0.5}, data)
    batch = next(BPRSampler(data, batch_size=64).epoch())
    model.loss(batch).backward()
    fast = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    if name == "vbpr":
        users, items = model.u_embedding, model.item_vectors()
        u, p, n = users[batch.users], items[batch.pos_items], items[batch.neg_items]
        full = bpr_loss(dot_scores(u, p), dot_scores(u, n)) + 0.5 * emb_loss(u, p, n)
    else:
        users, items = model.final_embeddings()
        u = users[batch.users]
        full = -torch.nn.functional.logsigmoid(dot_scores(u, items[batch.pos_items]) - dot_scores(u, items[batch.neg_items])).mean()
        for m, table in model.feature_tables.items():
            f = model.feature_projections[m](table.weight)
            full = full + 0.5 * -torch.nn.functional.logsigmoid(
                dot_scores(u, f[batch.pos_items]) - dot_scores(u, f[batch.neg_items])).mean()
    full.backward()
    for k, p in model.named_parameters():
        if k in fast:
            torch.testing.assert_close(fast[k], p.grad, rtol=1e-4, atol=1e-6, msg=k)


def test_freedom_graphs_pruning_and_evaluation_graph():
    data = tiny_data()
    model = build_model("freedom", {"dropout": 0.8, "knn_k": 5}, data)
    mm = to_scipy_csr(model.mm_adj)
    assert np.all(np.diff(mm.indptr) >= 5) and np.all(np.diff(mm.indptr) <= 10)
    np.testing.assert_allclose(np.asarray(mm.sum(1)).ravel(), 1.0, rtol=1e-5)   # 0.1·(k · 1/k) + 0.9·(k · 1/k)
    torch.manual_seed(0)
    model.pre_epoch(1)
    masked = to_scipy_csr(model.masked_adj)
    n_edges = data.train.nnz
    assert masked.nnz == 2 * int(n_edges * 0.2)
    assert abs(masked - masked.T).max() < 1e-7
    r = masked[: data.n_users, data.n_users:]
    du, di = np.diff(r.indptr), np.bincount(r.indices, minlength=data.n_items)
    rows = np.repeat(np.arange(data.n_users), du)
    np.testing.assert_allclose(r.data, 1 / np.sqrt((du[rows] + 1e-7) * (di[r.indices] + 1e-7)), rtol=1e-5)
    model.eval()
    users_eval, _ = model.final_embeddings()
    torch.testing.assert_close(users_eval, model._propagate(model.norm_adj)[0])


def test_freedom_without_modality_loss_drops_the_feature_tables():
    model = build_model("freedom", {"reg_weight": 0.0}, tiny_data())
    assert len(model.feature_tables) == 0
    assert sum(p.numel() for p in model.parameters()) == (model.n_users + model.n_items) * 64
