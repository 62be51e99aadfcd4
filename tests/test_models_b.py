"""LATTICE, BM3, MGCN, AlignRec: learning on the planted set, any modalities, sparse graphs, AlignRec's terms."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raymmrec.recsys.alignment_losses import similarity_regulariser
from raymmrec.recsys.graphs import cosine_topk_tensors, to_scipy_csr
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.registry import build_model, get_model
from raymmrec.recsys.trainer import TrainerConfig
from recsys_planted import (assert_learns, assert_one_finite_step, assert_search_space_accepted, first_batch, planted,
                            tiny_data, with_features)

MODELS = ["lattice", "bm3", "mgcn", "alignrec"]


def topk_values(x: np.ndarray, k: int) -> np.ndarray:
    """MMRec's dense recipe: cosine matrix, top-k per row with the values kept, zeros elsewhere."""
    t = torch.from_numpy(x)
    sim = F.normalize(t, dim=1) @ F.normalize(t, dim=1).T
    val, idx = torch.topk(sim, k, dim=1)
    return torch.zeros_like(sim).scatter_(1, idx, val).numpy()


def sym_normalised(s: np.ndarray) -> np.ndarray:
    """D^-1/2 S D^-1/2 with D the row sums."""
    inv = s.sum(1) ** -0.5
    return inv[:, None] * s * inv[None, :]


def dense_knn_w(x: np.ndarray, k: int) -> np.ndarray:
    return sym_normalised(topk_values(x, k))


@pytest.mark.parametrize("name", MODELS)
def test_loss_falls_and_beats_popularity(name):
    assert_learns(name, epochs=15, margin=0.05)


@pytest.mark.parametrize("modalities", [("text", "image"), ("image",), ("unified",)])
@pytest.mark.parametrize("name", MODELS)
def test_forward_and_backward_with_any_modalities(name, modalities):
    p = planted()
    rng = np.random.default_rng(1)
    pool = {**p.features, "unified": rng.standard_normal((p.n_items, 11)).astype(np.float32)}
    data = with_features({m: pool[m] for m in modalities})
    model = build_model(name, {"knn_k": 5} if name != "bm3" else {}, data)
    assert_one_finite_step(model, data)


@pytest.mark.parametrize("name", ["lattice", "mgcn", "alignrec"])
def test_frozen_item_graphs_are_sparse_top_k_and_equal_the_dense_recipe(name):
    data = tiny_data()
    model = build_model(name, {"knn_k": 7}, data)
    buffers = {k: v for k, v in model.named_buffers()
               if k.startswith(("fixed_adj_", "item_adj_")) and not k.endswith("_t")}
    if name == "alignrec":
        buffers = {"item_adj": model.item_adj}
    assert len(buffers) == (1 if name == "alignrec" else 2), list(buffers)
    for key, graph in buffers.items():
        s = to_scipy_csr(graph)
        assert s.nnz <= 7 * data.n_items and np.all(np.diff(s.indptr) == 7), key
        m = key.rsplit("_", 1)[-1]
        if name == "alignrec":   # two modalities: the graph of the concatenated unit rows
            feats = np.concatenate([f / np.linalg.norm(f, axis=1, keepdims=True) for f in data.features.values()], 1)
        else:
            feats = data.features[m]
        np.testing.assert_allclose(s.toarray(), dense_knn_w(feats, 7), rtol=1e-4, atol=1e-6)


def test_lattice_learned_graph_matches_the_dense_recipe_and_is_rebuilt_once_per_epoch():
    data = tiny_data()
    model = build_model("lattice", {"knn_k": 6}, data)
    learned, weights = model._learned_graph()
    projected = [model.projections[m](model.feature_tables[m]).detach().numpy() for m in model.modalities]
    # MMRec: Σ w_m dense top-k (values kept), then normalised; here per modality k rows each.
    dense = sum(w * topk_values(x, 6) for w, x in zip(weights.detach().numpy(), projected))
    np.testing.assert_allclose(learned.to_scipy().toarray(), sym_normalised(dense), rtol=1e-4, atol=1e-6)
    counts = learned.row_counts()
    assert np.all(counts >= 6) and np.all(counts <= 12)

    batch = first_batch(data, model)
    model.pre_epoch(1)
    model.loss(batch).backward()
    first_graph = model._item_adj
    assert model.projections["text"].weight.grad is not None and model.modal_weight.grad is not None
    assert model.feature_tables["image"].grad is not None
    model.zero_grad(set_to_none=True)
    model.loss(batch).backward()
    assert model._item_adj is first_graph   # not rebuilt within the epoch
    assert model.projections["text"].weight.grad is None and model.modal_weight.grad is None
    assert model.item_embedding.grad is not None
    model.pre_epoch(2)
    model.loss(batch)
    assert model._item_adj is not first_graph


def test_cosine_topk_blockwise_equals_full():
    x = torch.randn(50, 8)
    full = torch.topk(F.normalize(x, dim=1) @ F.normalize(x, dim=1).T, 4, dim=1).indices
    assert torch.equal(cosine_topk_tensors(x, 4, block_rows=7)[0], full)


def test_bm3_trains_without_negatives_and_regularises_whole_tables():
    data = tiny_data()
    model = build_model("bm3", {}, data)
    assert not model.uses_negatives
    batch = first_batch(data, model)
    assert batch.neg_items is None
    model.loss(batch).backward()
    # EmbLoss over every row reaches users outside the batch; trainable feature tables get gradient.
    outside = torch.ones(data.n_users, dtype=torch.bool)
    outside[batch.users] = False
    assert model.user_embedding.grad[outside].abs().sum() > 0
    assert all(t.grad is not None for t in model.feature_tables.values())


def test_alignrec_loss_terms_are_present_finite_and_weighted():
    data = tiny_data()
    cfg = {"cca_weight": 0.5, "uia_weight": 0.3, "sim_weight": 0.2, "reg_weight": 0.1}
    model = build_model("alignrec", cfg, data)
    batch = first_batch(data, model)
    terms = model.loss_terms(batch)
    assert set(terms) == {"bpr", "l2", "cca", "uia", "reg"}
    assert all(torch.isfinite(v) and v > 0 for v in terms.values()), terms
    want = terms["bpr"] + 0.1 * terms["l2"] + 0.5 * terms["cca"] + 0.3 * terms["uia"] + 0.2 * terms["reg"]
    torch.testing.assert_close(model.loss(batch), want)
    # REG by hand: ‖M Mᵀ − cos(v)‖_F / B with M the batch's h_mm item rows.
    h_mm, _ = model._forward()
    m = h_mm[batch.pos_items + data.n_users]
    unit = torch.cat([F.normalize(torch.from_numpy(data.features[k])[batch.pos_items], dim=1)
                      for k in data.features], dim=1) / np.sqrt(2)
    want_reg = torch.linalg.vector_norm(m @ m.T - unit @ unit.T) / len(batch)
    torch.testing.assert_close(terms["reg"], want_reg)


def test_alignrec_reg_stops_the_gradient_at_the_target():
    m = torch.randn(6, 4, requires_grad=True)
    enc = torch.randn(6, 9, requires_grad=True)
    target = F.normalize(enc, dim=1) @ F.normalize(enc, dim=1).T
    similarity_regulariser(m, target).backward()
    assert enc.grad is None and m.grad is not None and m.grad.abs().sum() > 0
    model = build_model("alignrec", {}, tiny_data())
    assert not model.target_similarity(torch.arange(5)).requires_grad


def test_trainer_defaults_and_search_spaces_are_valid():
    for name in MODELS:
        spec = get_model(name)
        assert_search_space_accepted(name)
        TrainerConfig(**getattr(spec.model_cls, "trainer_defaults", {}))
        for key, values in getattr(spec.model_cls, "trainer_search_space", {}).items():
            for v in next(iter(values.values())):
                TrainerConfig(**{key: v})
    assert get_model("alignrec").model_cls.trainer_defaults["patience"] == 30
