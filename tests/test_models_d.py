"""LayerGCN, SelfCF, ItemKNNCBF, MMGCF, LGMRec and Mirror Gradient: learning on the planted set, any
modalities, sparse graphs, the models' own mechanics, and Mirror Gradient's two steps."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raymmrec.errors import ConfigError
from raymmrec.recsys.graphs import to_scipy_csr
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.metrics import full_ranking_metrics, popularity_scores
from raymmrec.recsys.mirror_gradient import SEARCH_SPACE, MirrorGradient
from raymmrec.recsys.registry import build_model, get_model
from raymmrec.recsys import trainer as trainer_module
from raymmrec.recsys.trainer import TrainerConfig, run_hash, train_model
from raymmrec.tune.space import model_space
from recsys_planted import (FAST_TRAINER, assert_checkpoint_round_trip, assert_learns, assert_one_finite_step,
                            assert_search_space_accepted, first_batch, planted, tiny_data, with_features)

TRAINED = ["layergcn", "selfcf", "mmgcf", "lgmrec"]
MODELS = TRAINED + ["itemknncbf"]


def popularity_recall(data: InteractionData) -> float:
    return full_ranking_metrics(popularity_scores(data), data, "test")["recall@20"]


@pytest.mark.parametrize("name", TRAINED)
def test_loss_falls_and_beats_popularity(name):
    assert_learns(name, epochs=12, margin=0.1)


@pytest.mark.parametrize("modalities", [("text", "image"), ("image",), ("unified",), ("text", "image", "unified")])
@pytest.mark.parametrize("name", MODELS)
def test_forward_and_backward_with_any_modalities(name, modalities):
    p = planted()
    pool = {**p.features, "unified": np.random.default_rng(1).standard_normal((p.n_items, 11)).astype(np.float32)}
    data = with_features({m: pool[m] for m in modalities})
    model = build_model(name, {}, data)
    assert_one_finite_step(model, data)


@pytest.mark.parametrize("name", ["itemknncbf", "mmgcf", "lgmrec"])
def test_content_models_refuse_data_without_features(name):
    p = planted()
    with pytest.raises(Exception, match="needs item features"):
        build_model(name, {}, InteractionData.from_arrays(p.users, p.items, p.splits, p.n_users, p.n_items))


def test_itemknncbf_is_sparse_top_k_equals_mmrecs_dense_recipe_and_beats_popularity():
    data = tiny_data()
    model = build_model("itemknncbf", {"knn_k": 7, "shrink": 10.0, "knn_block_rows": 33}, data)
    assert np.all(np.diff(model.similarity.indptr) == 7)
    # MMRec's recipe, dense: s_ij = x_i·x_j / (‖x_i‖‖x_j‖ + shrink), top-k values per row, scores R · S
    x = torch.from_numpy(np.concatenate(list(data.features.values()), axis=1))
    norms = x.norm(dim=1, keepdim=True)
    sim = (x @ x.T) / (norms * norms.T + 10.0)
    val, idx = torch.topk(sim, 7, dim=1)
    dense = torch.zeros_like(sim).scatter_(1, idx, val)
    want = torch.from_numpy(data.train.toarray().astype(np.float32)) @ dense
    users = torch.arange(data.n_users)
    torch.testing.assert_close(model.full_scores(users), want, rtol=1e-5, atol=1e-6)
    result = train_model("itemknncbf", {}, TrainerConfig(**FAST_TRAINER), data)
    assert result.epochs_run == 1          # MMRec's yaml: one epoch, nothing learned
    assert result.test_at_best["recall@20"] > popularity_recall(data) + 0.03


def test_layergcn_prunes_by_degree_then_uniformly_and_scores_on_the_full_graph():
    data = tiny_data()
    model = build_model("layergcn", {"dropout": 0.25}, data)
    n_edges = model.edges.shape[1]
    graphs = []
    for epoch in (1, 2):
        torch.manual_seed(0)
        model.pre_epoch(epoch)
        adj = to_scipy_csr(model.masked_adj)
        assert adj.nnz == 2 * int(n_edges * 0.75) and abs(adj - adj.T).max() < 1e-7
        graphs.append(adj)
    assert (graphs[0] != graphs[1]).nnz > 0    # same seed, other rule: degree-weighted, then uniform
    model.eval()
    users, items = model.final_embeddings()
    # layer-refined readout by hand on the full graph
    a = torch.from_numpy(to_scipy_csr(model.norm_adj).toarray())
    ego = torch.cat([model.user_embedding, model.item_embedding]).detach()
    layer, total = ego, 0
    for _ in range(model.config.n_layers):
        layer = a @ layer
        layer = F.cosine_similarity(layer, ego, dim=-1)[:, None] * layer
        total = total + layer
    torch.testing.assert_close(torch.cat([users, items]), total, rtol=1e-4, atol=1e-6)


def test_selfcf_edge_dropout_transpose_and_scores():
    data = tiny_data()
    model = build_model("selfcf", {}, data)
    np.random.seed(0)
    adj, adj_t = model._edge_dropped_adjacency()
    a, at = to_scipy_csr(adj), to_scipy_csr(adj_t)
    assert abs(a.T - at).max() == 0 and (a != 0).sum() < to_scipy_csr(model.adj).nnz
    model.eval()
    users, items = model._encode(model.adj)
    want = model.predictor(users[:5]) @ items.T + users[:5] @ model.predictor(items).T
    torch.testing.assert_close(model.full_scores(torch.arange(5)), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fusion_mode", ["mean", "sum", "concat"])
@pytest.mark.parametrize("weighting", ["equal", "alpha", "normalized"])
def test_mmgcf_fusions_train_and_batch_fusion_equals_whole_table(fusion_mode, weighting):
    data = tiny_data()
    model = build_model("mmgcf", {"fusion_mode": fusion_mode, "weighting": weighting, "dropout": 0.0}, data)
    batch = first_batch(data, model)
    model.loss(batch).backward()
    assert model.user_embedding.weight.grad.abs().sum() > 0
    assert all(p.weight.grad is not None for p in model.projections.values())
    with torch.no_grad():
        users, items = model._propagate(model.norm_adj)
        whole = model._fused_items(items)
        ids = torch.tensor([3, 1, 4])
        torch.testing.assert_close(model._fused_items(items[ids], ids), whole[ids])


def test_mmgcf_rejects_elementwise_fusion_of_unequal_sizes():
    with pytest.raises(ConfigError, match="feat_embed_dim"):
        build_model("mmgcf", {"fusion_mode": "sum", "feat_embed_dim": 32}, tiny_data())
    build_model("mmgcf", {"fusion_mode": "concat", "feat_embed_dim": 32}, tiny_data())


def test_lgmrec_hyperedge_assignments_and_contrast_over_modality_pairs():
    data = tiny_data()
    model = build_model("lgmrec", {"hyper_num": 6, "cl_weight": 1.0}, data)
    assert model.modalities == ["image", "text"]
    batch = first_batch(data, model)
    torch.manual_seed(0)
    with_contrast = model.loss(batch)
    model.config.cl_weight = 0.0
    torch.manual_seed(0)
    without = model.loss(batch)
    assert with_contrast > without                                       # the InfoNCE term is positive
    _, hyper = model._forward()
    users, items = hyper["image"]
    assert users.shape == (data.n_users, 64) and items.shape == (data.n_items, 64)
    assert model.hyperedges["text"].shape == (16, 6)
    # one modality: no pair to contrast, so cl_weight changes nothing
    single = with_features({"image": data.features["image"]})
    m1 = build_model("lgmrec", {"cl_weight": 1.0}, single)
    torch.manual_seed(0)
    a = m1.loss(batch)
    m1.config.cl_weight = 0.0
    torch.manual_seed(0)
    torch.testing.assert_close(m1.loss(batch), a)


def test_mirror_gradient_takes_the_two_steps_by_hand():
    # loss ½‖θ − c‖², SGD lr η: θ₁ = θ₀ − η α1 (θ₀ − c), then θ₂ = θ₁ + η α2 (θ₁ − c)
    c = torch.tensor([1.0, -2.0])
    theta = torch.nn.Parameter(torch.tensor([3.0, 0.5]))
    opt = torch.optim.SGD([theta], lr=0.1)
    loss_fn = lambda: 0.5 * (theta - c).pow(2).sum()                     # noqa: E731
    mirror = MirrorGradient(alpha1=1.0, alpha2=0.3, beta=2)
    assert [mirror.applies(i) for i in range(4)] == [True, False, True, False]
    assert mirror.step(loss_fn(), loss_fn, opt)
    t0 = torch.tensor([3.0, 0.5])
    t1 = t0 - 0.1 * 1.0 * (t0 - c)
    torch.testing.assert_close(theta.detach(), t1 + 0.1 * 0.3 * (t1 - c))


def test_mirror_gradient_in_the_trainer_steps_twice_every_beta_batches_and_is_searchable(monkeypatch):
    data = tiny_data()
    n_batches = math.ceil(data.n_train / FAST_TRAINER["batch_size"])
    optimizers = []
    make = trainer_module.adam_optimizer
    monkeypatch.setattr(trainer_module, "adam_optimizer", lambda params, cfg: optimizers.append(make(params, cfg))
                        or optimizers[-1])
    results = {}
    for mg in (False, True):
        cfg = TrainerConfig(epochs=2, patience=100, mirror_gradient=mg, mg_beta=3, mg_alpha2=0.2, **FAST_TRAINER)
        results[mg] = train_model("lightgcn", {}, cfg, data)
    steps = [int(next(iter(opt.state.values()))["step"]) for opt in optimizers]
    # batches 0, 3, 6, ... of each epoch take a second (mirrored) step
    assert steps == [2 * n_batches, 2 * (n_batches + math.ceil(n_batches / 3))], (steps, n_batches)
    assert results[True].test_at_best["recall@20"] > popularity_recall(data)
    assert not torch.equal(results[False].model.user_embedding, results[True].model.user_embedding)
    with pytest.raises(ConfigError, match="mg_beta"):
        train_model("lightgcn", {}, TrainerConfig(epochs=1, mirror_gradient=True, mg_beta=0, **FAST_TRAINER), data)
    space = model_space("lightgcn", {**SEARCH_SPACE, "n_layers": {"grid": [1, 2]}})
    assert space["trainer.mg_alpha2"] == {"grid": [0.1, 0.2, 0.3]}
    # off, its settings do not change a run's identity (resuming older runs); on, they do
    model_cfg = get_model("lightgcn").make_config({})

    def ident(trainer_cfg):
        return run_hash("lightgcn", model_cfg, trainer_cfg, data)

    off, on = TrainerConfig(), TrainerConfig(mirror_gradient=True)
    assert ident(off) == ident(replace(off, mg_alpha2=0.3))
    assert ident(on) != ident(replace(on, mg_alpha2=0.3)) and ident(on) != ident(off)


def test_search_spaces_and_trainer_defaults_are_valid():
    for name in MODELS:
        assert_search_space_accepted(name)
    assert not get_model("itemknncbf").model_cls.learns


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_round_trip_reproduces_scores(name):
    assert_checkpoint_round_trip(name)
