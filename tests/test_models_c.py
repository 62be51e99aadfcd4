"""DRAGON, SMORE, PGL, DA-MRS, MVGAE: learning on the planted set, any modalities, sparse graphs with the right k."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from raymmrec.errors import ConfigError, DataError
from raymmrec.recsys.graphs import to_scipy_csr
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.models.damrs import behaviour_graph, mean_masked_knn_graphs
from raymmrec.recsys.models.mvgae import product_of_experts
from raymmrec.recsys.models.smore import max_pool_graphs
from raymmrec.recsys.registry import build_model, get_model
from raymmrec.recsys.sampling import BPRSampler
from raymmrec.recsys.trainer import TrainerConfig, train_model
from raymmrec.tune.space import model_space
from recsys_planted import FAST_TRAINER, assert_learns, assert_search_space_accepted, planted, tiny_data, with_features

MODELS = ["dragon", "smore", "pgl", "damrs", "mvgae"]


def cosine(x: np.ndarray) -> np.ndarray:
    t = F.normalize(torch.from_numpy(np.asarray(x, np.float32)), dim=1)
    return (t @ t.T).numpy()


def dense_knn_bin(x: np.ndarray, k: int) -> np.ndarray:
    """MMRec's FREEDOM-style graph: top-k mask, weight 1, (d_r d_c)^-1/2 with d = k + 1e-7."""
    idx = np.argsort(-cosine(x), axis=1, kind="stable")[:, :k]
    a = np.zeros((len(x), len(x)))
    np.put_along_axis(a, idx, 1.0, axis=1)
    inv = (a.sum(1) + 1e-7) ** -0.5
    return inv[:, None] * a * inv[None, :]


def dense_knn_w(x: np.ndarray, k: int) -> np.ndarray:
    sim = cosine(x)
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    a = np.zeros_like(sim)
    np.put_along_axis(a, idx, np.take_along_axis(sim, idx, 1), axis=1)
    inv = a.sum(1) ** -0.5
    return inv[:, None] * a * inv[None, :]


@pytest.mark.parametrize("name", [m for m in MODELS if m != "mvgae"])
def test_loss_falls_and_beats_popularity(name):
    assert_learns(name, epochs=10, margin=0.05)


@pytest.mark.parametrize("modalities", [("text", "image"), ("image",), ("unified",), ("text", "audio", "image")])
@pytest.mark.parametrize("name", MODELS)
def test_forward_and_backward_with_any_modalities(name, modalities):
    p = planted()
    rng = np.random.default_rng(1)
    pool = {**p.features, "unified": rng.standard_normal((p.n_items, 11)).astype(np.float32),
            "audio": rng.standard_normal((p.n_items, 9)).astype(np.float32)}
    data = with_features({m: pool[m] for m in modalities})
    model = build_model(name, {}, data)
    model.pre_epoch(1)
    batch = next(BPRSampler(data, batch_size=48).epoch())
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [q.grad for q in model.parameters() if q.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    model.eval()
    scores = model.full_scores(torch.arange(10))
    assert scores.shape == (10, data.n_items) and torch.isfinite(scores).all()


@pytest.mark.parametrize("name", MODELS)
def test_models_refuse_data_without_features(name):
    p = planted()
    with pytest.raises(DataError, match=f"model '{name}' needs item features"):
        build_model(name, {}, InteractionData.from_arrays(p.users, p.items, p.splits))


def test_dragon_and_pgl_item_graph_is_the_mixed_knn_bin_graph_and_the_user_graph_has_40_neighbours():
    data = tiny_data()
    want = 0.1 * dense_knn_bin(data.features["image"], 6) + 0.9 * dense_knn_bin(data.features["text"], 6)
    for name in ("dragon", "pgl"):
        model = build_model(name, {"knn_k": 6}, data)
        s = to_scipy_csr(model.mm_adj)
        assert np.all(np.diff(s.indptr) <= 12)
        np.testing.assert_allclose(s.toarray(), want, rtol=1e-4, atol=1e-6)
    model = build_model("dragon", {}, data)
    model.pre_epoch(0)
    users = to_scipy_csr(model.user_adj)
    assert users.shape == (data.n_users, data.n_users) and np.all(np.diff(users.indptr) <= 40)
    sums = np.asarray(users.sum(1)).ravel()       # softmax weights; a user without co-users has none
    assert np.all(np.isclose(sums, 1.0, rtol=1e-5) | (sums == 0)) and (sums > 0).mean() > 0.9
    users, items = model.final_embeddings()
    assert users.shape == (data.n_users, 128) and items.shape == (data.n_items, 128)   # two 64-d slots


def test_smore_modality_graphs_are_knn_w_with_their_own_k_and_the_fusion_graph_their_max():
    data = tiny_data()
    model = build_model("smore", {"image_knn_k": 7, "text_knn_k": 4}, data)
    graphs = {}
    for m, k in (("image", 7), ("text", 4)):
        s = to_scipy_csr(getattr(model, f"item_adj_{m}"))
        assert np.all(np.diff(s.indptr) == k)
        np.testing.assert_allclose(s.toarray(), dense_knn_w(data.features[m], k), rtol=1e-4, atol=1e-6)
        graphs[m] = s
    fusion = to_scipy_csr(model.fusion_adj)
    present = (graphs["image"].toarray() != 0) | (graphs["text"].toarray() != 0)
    assert np.array_equal(fusion.toarray() != 0, present)
    both = np.maximum(np.where(graphs["image"].toarray() != 0, graphs["image"].toarray(), -np.inf),
                      np.where(graphs["text"].toarray() != 0, graphs["text"].toarray(), -np.inf))
    np.testing.assert_allclose(fusion.toarray(), np.where(present, both, 0.0), rtol=1e-6)


def test_max_pool_keeps_a_negative_entry_present_in_one_graph_only():
    a = sp.csr_matrix(np.array([[0.5, -0.2], [0.0, 0.3]], np.float32))
    b = sp.csr_matrix(np.array([[0.1, 0.0], [0.4, -0.1]], np.float32))
    np.testing.assert_allclose(max_pool_graphs([a, b]).toarray(), [[0.5, -0.2], [0.4, 0.3]])


def test_pgl_prunes_to_30_percent_of_edges_each_epoch_and_refuses_global_mode():
    data = tiny_data()
    model = build_model("pgl", {}, data)
    model.pre_epoch(0)
    first = to_scipy_csr(model.sub_graph)
    assert first.nnz == 2 * int(0.3 * data.train.nnz)
    model.pre_epoch(1)
    assert (to_scipy_csr(model.sub_graph) != first).nnz > 0
    with pytest.raises(ConfigError, match="pgl.mode: only 'local'"):
        build_model("pgl", {"mode": "global"}, data)


def test_damrs_graphs_equal_mmrecs_dense_recipe():
    data = tiny_data()
    k = 5
    image, text = data.features["image"], data.features["text"]
    v, t = cosine(image), cosine(text)
    drop = (v < v.mean()) | (t < t.mean())
    v[drop], t[drop] = 0.0, 0.0
    want = []
    for sim in (v, t):
        a = np.zeros_like(sim)
        for i in range(len(sim)):
            n = min(int((t[i] != 0).sum()), k)
            a[i, np.argsort(-sim[i], kind="stable")[:n]] = 1.0
        inv = (a.sum(1) + 1e-7) ** -0.5
        want.append(inv[:, None] * a * inv[None, :])
    got = mean_masked_knn_graphs([image, text], k, block_rows=37)
    for g, w in zip(got, want):
        assert np.all(np.diff(g.indptr) <= k)
        np.testing.assert_allclose(g.toarray(), w, rtol=1e-4, atol=1e-6)
    # behaviour graph: itself plus ≤ 2 items sharing ≥ 2 users
    b = behaviour_graph(data.train, 2)
    counts = np.diff(b.indptr)
    assert np.all((counts >= 1) & (counts <= 3)) and np.all(b.diagonal() > 0)
    r = (data.train > 0).astype(np.float32)
    shared = (r.T @ r).toarray()
    rows, cols = b.nonzero()
    off = rows != cols
    assert np.all(shared[rows[off], cols[off]] >= 2)


def test_mvgae_objective_saturates_as_mmrecs_does():
    """MMRec's MVGAE scores σ(σ(z_u)·σ(z_i)) against the hardest in-batch negative: with 64-d σ-squashed latents
    both sides sit near σ(16) ≈ 1, so the per-pair loss stays near log₂ 2 and barely moves (step parity shows
    MMRec's code computes the same). The loss still falls, slowly; it does not beat popularity here."""
    data = tiny_data()
    result = train_model("mvgae", {}, TrainerConfig(epochs=3, patience=100, **FAST_TRAINER), data)
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < losses[0], losses
    pairs = 4 * FAST_TRAINER["batch_size"]          # fused + 3 branch reconstructions, summed over the batch
    assert abs(losses[-1] / pairs - 1.0) < 0.1, losses


def test_mvgae_fixed_tables_are_not_trained_and_experts_fuse_by_precision():
    data = tiny_data()
    model = build_model("mvgae", {}, data)
    names = {n for n, _ in model.named_parameters()}
    assert not any("preference" in n or "features_" in n for n in names)
    assert "features_collaborative" in dict(model.named_buffers())
    before = model.branches["image"].preference.clone()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model.loss(next(BPRSampler(data, batch_size=32).epoch())).backward()
    opt.step()
    assert torch.equal(model.branches["image"].preference, before)
    mu, logvar = product_of_experts([torch.tensor([1.0]), torch.tensor([3.0])],
                                    [torch.log(torch.tensor([1.0])), torch.log(torch.tensor([3.0]))])
    torch.testing.assert_close(mu, torch.tensor([1.5]))                  # (1·1 + 3·⅓) / (1 + ⅓)
    torch.testing.assert_close(logvar, torch.log(torch.tensor([0.75])))
    model.eval()
    users, items = model.final_embeddings()
    assert ((users > 0) & (users < 1)).all() and ((items > 0) & (items < 1)).all()   # σ(μ) scores


def test_trainer_defaults_and_search_spaces_are_valid():
    for name in MODELS:
        spec = get_model(name)
        assert_search_space_accepted(name)
        TrainerConfig(**spec.model_cls.trainer_defaults)
        for key, values in spec.model_cls.trainer_search_space.items():
            for v in next(iter(values.values())):
                TrainerConfig(**{key: v})
        assert model_space(name)                        # what the tune job searches, checked as it checks it
    assert get_model("smore").model_cls.trainer_defaults["lr_scheduler"] == [0.96, 50.0]
    assert model_space("dragon")["trainer.lr"] == {"grid": [0.1, 0.01, 1e-3, 1e-4, 1e-5]}
