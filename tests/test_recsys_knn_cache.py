"""The on-disk kNN cache: a second load of the same feature file reuses its neighbour lists; a changed
file, another k, or a fused set gets its own; an empty RAYMMREC_CACHE_DIR writes nothing."""
import numpy as np
import pytest

import raymmrec.recsys.interaction_data as interaction_data
from raymmrec.recsys.graphs import knn_graph_scipy
from raymmrec.recsys.interaction_data import InteractionData
from recsys_planted import planted, write_mmrec_folder


def _no_search(*args, **kwargs):
    raise AssertionError("the neighbour search ran although its lists were cached")


def test_second_load_reuses_lists_and_a_changed_file_does_not(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYMMREC_CACHE_DIR", str(tmp_path / "cache"))
    folder = write_mmrec_folder(planted(), tmp_path / "toy")
    first = InteractionData.load(folder)
    weighted = first.knn_graph("image", 5, weighted=True)
    assert len(list((tmp_path / "cache" / "knn").glob("*.npz"))) == 1
    assert (weighted != knn_graph_scipy(first.features["image"], 5, weighted=True)).nnz == 0

    monkeypatch.setattr(interaction_data, "item_topk", _no_search)
    second = InteractionData.load(folder)
    assert (second.knn_graph("image", 5, weighted=True) != weighted).nnz == 0
    # KNN-bin comes from the same lists
    assert (second.knn_graph("image", 5) != knn_graph_scipy(first.features["image"], 5)).nnz == 0
    with pytest.raises(AssertionError, match="cached"):
        second.knn_graph("image", 6)                 # another k is another search

    image = np.load(folder / "image_feat.npy")
    np.save(folder / "image_feat.npy", image[::-1].copy())   # same size, new content and mtime
    with pytest.raises(AssertionError, match="cached"):
        InteractionData.load(folder).knn_graph("image", 5)


def test_fused_graph_is_the_graph_of_concatenated_unit_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYMMREC_CACHE_DIR", str(tmp_path / "cache"))
    data = InteractionData.load(write_mmrec_folder(planted(), tmp_path / "toy"))
    unit = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in (data.features["text"], data.features["image"])]
    expected = knn_graph_scipy(np.concatenate(unit, axis=1), 4, weighted=True)
    got = data.knn_graph("text+image", 4, weighted=True)
    assert abs(got - expected).max() < 1e-5 and got.nnz == expected.nnz == 4 * data.n_items
    assert len(list((tmp_path / "cache" / "knn").glob("*.npz"))) == 1


def test_empty_cache_dir_turns_the_cache_off(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYMMREC_CACHE_DIR", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = InteractionData.load(write_mmrec_folder(planted(), tmp_path / "toy"))
    data.knn_graph("text", 3)
    assert not (tmp_path / "home").exists()
    assert not list(tmp_path.rglob("*.npz"))
