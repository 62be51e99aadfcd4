"""knn_method=faiss: FAISS IVF neighbours close to the exact ones, exact when every cell is probed, short
rows completed exactly, cached apart from the exact lists, and selectable from a model's config."""
import numpy as np
import pytest

from raymmrec.errors import ConfigError
from raymmrec.recsys.approximate_knn import faiss_topk, item_topk, neighbour_recall
from raymmrec.recsys.graphs import cosine_topk
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.registry import get_model
from recsys_planted import planted, write_mmrec_folder

pytest.importorskip("faiss")


def _clustered(n: int = 3000, d: int = 32, clusters: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, d))
    return (centers[rng.integers(clusters, size=n)] + 0.4 * rng.normal(size=(n, d))).astype(np.float32)


def test_neighbour_recall_counts_shared_columns():
    exact = np.array([[0, 1, 2], [1, 0, 3]])
    approx = np.array([[0, 2, 5], [1, 3, 0]])
    assert neighbour_recall(approx, exact) == pytest.approx(5 / 6)


def test_ivf_lists_are_close_to_exact_and_their_similarities_are_true_cosines():
    x = _clustered()
    exact_cols, _ = cosine_topk(x, 10)
    cols, vals = faiss_topk(x, 10)
    assert neighbour_recall(cols, exact_cols) >= 0.9
    assert (cols == np.arange(len(x))[:, None]).any(axis=1).mean() >= 0.99     # each item finds itself
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(vals, np.einsum("nd,nkd->nk", unit, unit[cols]), atol=1e-4)
    assert (np.diff(vals, axis=1) <= 1e-6).all()                               # best first, like exact


def test_probing_every_cell_is_exact():
    x = _clustered(n=1200, seed=1)
    cols, _ = faiss_topk(x, 8, nlist=16, nprobe=16)
    assert neighbour_recall(cols, cosine_topk(x, 8)[0]) == 1.0


def test_rows_whose_probed_cells_hold_fewer_than_k_items_are_searched_exactly():
    x = _clustered(n=1000, clusters=50, seed=2)
    cols, vals = faiss_topk(x, 60, nlist=25, nprobe=1)        # ~40 items per cell < k = 60
    assert (cols >= 0).all() and np.isfinite(vals).all()
    exact_cols, _ = cosine_topk(x, 60)
    assert neighbour_recall(cols, exact_cols) > 0.5


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown kNN method 'annoy'"):
        item_topk(_clustered(n=100), 5, "annoy")
    with pytest.raises(ConfigError, match="freedom.knn_method"):
        get_model("freedom").make_config({"knn_method": "annoy"})


def test_faiss_graph_is_cached_apart_and_freedom_builds_on_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYMMREC_CACHE_DIR", str(tmp_path / "cache"))
    data = InteractionData.load(write_mmrec_folder(planted(), tmp_path / "toy"))
    exact = data.knn_graph("image", 5)
    approx = data.knn_graph("image", 5, method="faiss")
    assert len(list((tmp_path / "cache" / "knn").glob("*.npz"))) == 2
    assert approx.shape == exact.shape and (np.diff(approx.indptr) == 5).all()
    model = get_model("freedom").build({"knn_k": 5, "knn_method": "faiss"}, data)
    assert model.mm_adj.shape == (data.n_items, data.n_items)
    assert ("image", 5, False, "faiss") in data.item_graphs
