import numpy as np
import pyarrow.parquet as pq
import pytest

from raymmrec.data import content_features
from raymmrec.data.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, SYNTH_TRUTH_FILE, DatasetDir, read_table
from raymmrec.data.synth import SynthConfig, generate_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate_dataset(SynthConfig(size="tiny", seed=0), tmp_path_factory.mktemp("synth") / "tiny")


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
    assert truth["item_attributes"].shape == (items.num_rows, len(truth["attribute_names"]))
    assert truth["user_clusters"].shape[0] == truth["user_ideal"].shape[0] == stats["users"]


def test_generator_is_seeded(tmp_path, tiny):
    again = generate_dataset(SynthConfig(size="tiny", seed=0), tmp_path / "again")
    assert pq.read_table(again.interactions).equals(pq.read_table(tiny.interactions))
    assert np.array_equal(np.load(again.features("raw") / "text.npy"), np.load(tiny.features("raw") / "text.npy"))
    other = generate_dataset(SynthConfig(size="tiny", seed=1, users=120, items=90), tmp_path / "other")
    assert not pq.read_table(other.interactions).equals(pq.read_table(tiny.interactions))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A tiny set with more users and items, so recall differences are not seed noise."""
    cfg = SynthConfig(size="tiny", seed=3, users=1000, items=800, interactions=10000)
    return generate_dataset(cfg, tmp_path_factory.mktemp("synth") / "planted")


@pytest.fixture(scope="module")
def one_per_family(tmp_path_factory):
    """One item per product family, so every item shows its own attribute values (what a regression needs)."""
    cfg = SynthConfig(size="tiny", seed=4, users=800, items=1300, interactions=8000, family_size=1.0)
    return generate_dataset(cfg, tmp_path_factory.mktemp("synth") / "one_per_family")


def test_content_knn_is_far_above_popularity_and_below_the_oracle(planted):
    from raymmrec.recsys.interaction_data import InteractionData
    from raymmrec.recsys.metrics import full_ranking_metrics, popularity_scores
    from raymmrec.recsys.reference_scorers import content_knn_scores, oracle_scorer

    data = InteractionData.load(planted.root)
    recall = lambda fn: full_ranking_metrics(fn, data, "test", ks=(20,))["recall@20"]  # noqa: E731
    pop = recall(popularity_scores(data))
    image, text, both = (recall(content_knn_scores(data, m)) for m in ("image", "text", ""))
    oracle = recall(oracle_scorer(data, planted.root / SYNTH_TRUTH_FILE))
    print(f"recall@20 popularity {pop:.3f} image {image:.3f} text {text:.3f} both {both:.3f} oracle {oracle:.3f}")
    assert both > 1.5 * pop, (both, pop)
    assert image > 1.1 * pop and text > 1.3 * pop, (image, text, pop)
    assert oracle > max(both, pop) * 1.2, (oracle, both)


def _held_out_r2(x: np.ndarray, y: np.ndarray, fit: np.ndarray) -> float:
    """R² on the rows not in `fit` of a ridge regression fit on those in it (is `y` linear in `x`?)."""
    from sklearn.linear_model import Ridge

    pred = Ridge(alpha=0.3).fit(x[fit], y[fit]).predict(x[~fit])
    return 1.0 - float(((pred - y[~fit]) ** 2).mean() / y[~fit].var())


def test_each_modality_shows_its_attributes_and_not_the_others(one_per_family):
    truth = np.load(one_per_family.root / SYNTH_TRUTH_FILE)
    attrs, names, shown = truth["item_attributes"], truth["attribute_names"], truth["attribute_modality"]
    # Held out by product family: variants share attributes, so a split inside a family would leak them.
    fit = truth["item_family"] % 2 == 0
    assert truth["item_family"].max() > 0.9 * len(fit)
    for modality in ("image", "text"):
        x = np.load(one_per_family.features("raw") / f"{modality}.npy")
        r2 = {str(n): _held_out_r2(x, attrs[:, k], fit) for k, n in enumerate(names)}
        print(modality, {n: round(v, 2) for n, v in r2.items()})
        for k, name in enumerate(map(str, names)):
            if shown[k] in (modality, "both"):
                assert r2[name] > 0.2, (modality, name, r2[name])
            else:        # written only in the other modality: nothing here to recover it from
                assert r2[name] < 0.1, (modality, name, r2[name])


def test_cold_items_reach_test(tiny):
    stats = tiny.stats()
    assert stats["test_share_cold_item"] > 0.01
    inter = pq.read_table(tiny.interactions).to_pandas()
    release = pq.read_table(tiny.items, columns=["release_ts"]).column("release_ts").to_numpy()
    # No interaction precedes its item's release, and some items are released after the log starts.
    assert (inter.timestamp.to_numpy() >= release[inter.item.to_numpy()]).all()
    assert (release > inter.timestamp.min()).any()


def test_impossible_counts_are_a_config_error(tmp_path):
    from raymmrec.errors import ConfigError

    with pytest.raises(ConfigError, match="items >= clusters x styles"):
        generate_dataset(SynthConfig(size="tiny", items=4, clusters=8), tmp_path / "x")
