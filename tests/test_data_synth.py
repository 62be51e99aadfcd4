import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from raymmrec.data import content_features
from raymmrec.data.schema import (INTERACTIONS_SCHEMA, ITEMS_SCHEMA, SYNTH_TRUTH_FILE, TEST, TRAIN, DatasetDir,
                                  read_table)
from raymmrec.data.synth import SynthConfig, generate_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate_dataset(SynthConfig(size="tiny", seed=0), tmp_path_factory.mktemp("synth") / "tiny")


def _recall_at(scores: np.ndarray, train: sp.csr_matrix, test: sp.csr_matrix, k: int = 20) -> float:
    scores = scores.astype(np.float64).copy()
    scores[train.nonzero()] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    users = np.unique(test.nonzero()[0])
    return float(np.mean([len(set(test[u].indices) & set(top[u])) / test[u].nnz for u in users]))


def _item_knn_scores(vectors: np.ndarray, train: sp.csr_matrix, neighbours: int = 30) -> np.ndarray:
    z = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-9)
    sim = z @ z.T
    np.fill_diagonal(sim, 0.0)
    cut = -np.sort(-sim, axis=1)[:, neighbours - 1:neighbours]
    return np.asarray(train @ np.where(sim >= cut, sim, 0.0))


def test_tiny_dataset_dir_is_complete_and_matches_schemas(tiny):
    ds = DatasetDir.at(tiny.root)
    inter = read_table(ds.interactions, INTERACTIONS_SCHEMA)
    items = read_table(ds.items, ITEMS_SCHEMA)
    stats = ds.stats()
    assert stats["users"] == inter.column("user").to_numpy().max() + 1
    assert stats["items"] == items.num_rows == inter.column("item").to_numpy().max() + 1
    assert 150 <= stats["users"] <= 600 and 80 <= stats["items"] <= 400
    assert items.column("item").to_pylist() == list(range(items.num_rows))
    assert all(items.column("image_ok").to_pylist())
    # Every image is a real PNG that decodes at the configured size.
    img = content_features.decode_image(items.column("image_bytes")[0].as_py())
    assert img is not None and img.size == (64, 64)
    assert ds.feature_sets() == ["raw"]
    image = np.load(ds.features("raw") / "image.npy")
    text = np.load(ds.features("raw") / "text.npy")
    assert image.shape == (items.num_rows, content_features.IMAGE_DIM) and image.dtype == np.float32
    assert text.shape == (items.num_rows, content_features.TEXT_DIM) and text.dtype == np.float32
    truth = np.load(ds.root / SYNTH_TRUTH_FILE)
    assert truth["item_cluster"].shape == (items.num_rows,)
    assert truth["user_clusters"].shape[0] == stats["users"]


def test_generator_is_seeded(tmp_path, tiny):
    again = generate_dataset(SynthConfig(size="tiny", seed=0), tmp_path / "again")
    assert pq.read_table(again.interactions).equals(pq.read_table(tiny.interactions))
    assert np.array_equal(np.load(again.features("raw") / "text.npy"), np.load(tiny.features("raw") / "text.npy"))
    other = generate_dataset(SynthConfig(size="tiny", seed=1, users=120, items=90), tmp_path / "other")
    assert not pq.read_table(other.interactions).equals(pq.read_table(tiny.interactions))


def test_content_carries_the_planted_signal(tmp_path):
    ds = generate_dataset(SynthConfig(size="tiny", seed=3, users=800, items=500, interactions=9000), tmp_path / "d")
    inter = pq.read_table(ds.interactions).to_pandas()
    n_users, n_items = ds.stats()["users"], ds.stats()["items"]

    def matrix(split):
        rows = inter[inter.split == split]
        return sp.csr_matrix((np.ones(len(rows)), (rows.user, rows.item)), shape=(n_users, n_items))

    train, test = matrix(TRAIN), matrix(TEST)
    popularity = np.tile(np.asarray(train.sum(axis=0)).ravel(), (n_users, 1))
    pop = _recall_at(popularity, train, test)
    truth = np.load(ds.root / SYNTH_TRUTH_FILE)
    latent = _recall_at(_item_knn_scores(truth["item_latent"], train), train, test)
    feats = {m: np.load(ds.features("raw") / f"{m}.npy") for m in ("image", "text")}
    image = _recall_at(_item_knn_scores(feats["image"], train), train, test)
    text = _recall_at(_item_knn_scores(feats["text"], train), train, test)
    print(f"recall@20 popularity {pop:.3f} latent {latent:.3f} image {image:.3f} text {text:.3f}")
    assert latent > 1.5 * pop, (latent, pop)
    assert image > 1.2 * pop, (image, pop)
    assert text > 1.2 * pop, (text, pop)


def test_cold_items_reach_test(tiny):
    stats = tiny.stats()
    assert stats["test_share_cold_item"] > 0.01
    inter = pq.read_table(tiny.interactions).to_pandas()
    release = pq.read_table(tiny.items, columns=["release_ts"]).column("release_ts").to_numpy()
    # No interaction precedes its item's release, and some items are released after the log starts.
    assert (inter.timestamp.to_numpy() >= release[inter.item.to_numpy()]).all()
    assert (release > inter.timestamp.min()).any()
