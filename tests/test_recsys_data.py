import json

import numpy as np
import pytest

from raymmrec.errors import DataError
from raymmrec.recsys.interaction_data import InteractionData
from recsys_planted import planted, write_dataset_dir, write_mmrec_folder


def test_from_arrays_counts_splits_pool_and_cold_items():
    # user 0: items 0, 1 (twice) in train; user 1: item 0 in train; item 2 only in test; user 2 has no train.
    data = InteractionData.from_arrays(users=[0, 0, 0, 1, 0, 1, 2], items=[0, 1, 1, 0, 3, 2, 1],
                                       splits=[0, 0, 0, 0, 1, 2, 1], n_users=3, n_items=4)
    assert data.train.toarray().tolist() == [[1, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert data.valid.toarray()[2].sum() == 0          # held-out row of a user without training data dropped
    assert data.n_train == 4 and data.train_item_pool.tolist() == [0, 1]
    assert data.cold_items.tolist() == [True, True, True, True]
    users, items = data.train_pairs()
    assert sorted(zip(users.tolist(), items.tolist())) == [(0, 0), (0, 1), (0, 1), (1, 0)]


def test_dataset_dir_loads_features_text_first(tmp_path):
    p = planted()
    root = write_dataset_dir(p, tmp_path / "ds")
    data = InteractionData.from_dataset_dir(root, features="raw")
    assert (data.n_users, data.n_items) == (p.n_users, p.n_items)
    assert list(data.features) == ["text", "image"]
    assert data.n_train + data.valid.sum() + data.test.sum() == len(p.users)
    ref = p.to_data()
    assert (data.train != ref.train).nnz == 0 and (data.test != ref.test).nnz == 0
    (root / "features" / "raw" / "manifest.json").write_text(json.dumps({"modalities": ["image"]}))
    assert list(InteractionData.from_dataset_dir(root).features) == ["image"]
    assert InteractionData.from_dataset_dir(root, features=None).features == {}


def test_mmrec_folder_loads_as_is(tmp_path):
    p = planted()
    folder = write_mmrec_folder(p, tmp_path / "toy")
    data = InteractionData.load(folder)
    assert data.name == "toy" and list(data.features) == ["text", "image"]
    assert data.features["image"].dtype == np.float32
    assert (data.valid != p.to_data().valid).nnz == 0


def test_feature_row_count_mismatch_names_the_file(tmp_path):
    p = planted()
    root = write_dataset_dir(p, tmp_path / "ds", features={"image": p.features["image"][:-3]})
    with pytest.raises(DataError, match=r"image\.npy': \d+ rows, expected one per item"):
        InteractionData.from_dataset_dir(root)


def test_nan_features_name_the_row(tmp_path):
    p = planted()
    bad = p.features["text"].copy()
    bad[7, 2] = np.nan
    root = write_dataset_dir(p, tmp_path / "ds", features={"text": bad})
    with pytest.raises(DataError, match=r"text\.npy': row 7 holds NaN"):
        InteractionData.from_dataset_dir(root)


def test_empty_split_and_missing_feature_set_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="split 'test' is empty"):
        InteractionData.from_arrays([0, 0, 1], [0, 1, 1], [0, 1, 0])
    root = write_dataset_dir(planted(), tmp_path / "ds")
    with pytest.raises(DataError, match="no feature set 'clip' \\(available: raw\\)"):
        InteractionData.from_dataset_dir(root, features="clip")
    with pytest.raises(DataError, match="neither a dataset dir"):
        InteractionData.load(tmp_path)


def test_object_store_round_trip_shares_arrays_and_graphs(ray_local):
    data = planted().to_data()
    data.knn_graph("text", 5)                      # precomputed before put: trials reuse it
    data.adjacency("sym")                          # process-local cache: not shipped
    ref = data.put()
    got = InteractionData.resolve(ref)
    assert got is not data and got._cache == {}
    assert (got.train != data.train).nnz == 0 and np.array_equal(got.features["image"], data.features["image"])
    assert ("text", 5, False) in got.item_graphs
    assert InteractionData.resolve(data) is data
