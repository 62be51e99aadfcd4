"""End to end on a generated dataset with broken inputs: CLIP / CLIPER / BEiT3 extraction through Ray Data actor
pools — shapes, item order, flagged rows, manifest, MLflow — and every multimodal backbone training on each set."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raymmrec.data import schema
from raymmrec.features import CliperConfig, FeaturesConfig, InferenceConfig, QualityConfig, extract_features
from raymmrec.features.inference import EncodeItems
from raymmrec.item_preprocess import TextPlan, preprocess_items
from raymmrec.tracking import TrackingConfig

UNDECODABLE, NO_IMAGE, MISSING_FILE, NO_BRAND_DESC, NO_TEXT = 3, 5, 7, 9, 11


def _break_items(root) -> None:
    """Corrupt a few items: bad image bytes, no image, an image path that does not exist, missing text fields."""
    rows = pq.read_table(root / schema.ITEMS_FILE).to_pylist()
    rows[UNDECODABLE]["image_bytes"] = b"\x89PNG definitely not an image"
    rows[NO_IMAGE]["image_bytes"] = None
    rows[MISSING_FILE].update(image_bytes=None, image="images/gone.png")
    rows[NO_BRAND_DESC].update(brand=None, description=None)
    rows[NO_TEXT].update(title=None, brand=None, categories=[], description=None)
    schema.write_table(pa.Table.from_pylist(rows, schema=schema.ITEMS_SCHEMA), root / schema.ITEMS_FILE,
                       schema.ITEMS_SCHEMA)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, ray_local):
    from raymmrec.data.synth import SynthConfig, generate_dataset

    base = tmp_path_factory.mktemp("features")
    root = generate_dataset(SynthConfig(size="tiny", seed=1), base / "tiny").root
    _break_items(root)
    tracking = TrackingConfig(experiment="features-test", uri=f"sqlite:///{base / 'mlflow.db'}", root=str(base))
    off = TrackingConfig(enabled=False)
    common = dict(data=str(root), quality=QualityConfig(ks=[10, 20]))
    results = {
        # two actors and small blocks: batches come back out of order, rows must not
        "clip": extract_features(FeaturesConfig(method="clip", tracking=tracking, **common,
                                                inference=InferenceConfig(batch_size=16, preprocess_batch_size=16,
                                                                          concurrency=2)), out=lambda s: None),
        "cliper": extract_features(FeaturesConfig(method="cliper", tracking=off, **common,
                                                  inference=InferenceConfig(concurrency=1)), out=lambda s: None),
        "beit3": extract_features(FeaturesConfig(method="beit3", tracking=off, **common,
                                                 inference=InferenceConfig(concurrency=1)), out=lambda s: None),
    }
    return root, tracking, results


def _reference(root, cfg: FeaturesConfig, source, plan: TextPlan) -> dict[str, np.ndarray]:
    """The same encoder applied in this process to all items in file order."""
    table = pq.read_table(root / schema.ITEMS_FILE, columns=["item", "title", "brand", "categories", "description",
                                                            "image", "image_bytes"])
    batch = preprocess_items(table, source.config, plan, str(root))
    return EncodeItems(source, plan.method, cfg.single_modality)(batch)


def test_clip_features_have_item_order_shapes_and_flagged_rows(extracted):
    from raymmrec.features.extract import encoder_for, text_plan

    root, _, results = extracted
    folder = results["clip"].folder
    n = pq.read_metadata(root / schema.ITEMS_FILE).num_rows
    image, text = np.load(folder / "image.npy"), np.load(folder / "text.npy")
    assert image.shape == (n, 64) and text.shape == (n, 64) and image.dtype == text.dtype == np.float32
    cfg = FeaturesConfig(method="clip", data=str(root))
    ref = _reference(root, cfg, encoder_for(cfg), text_plan(cfg))
    np.testing.assert_allclose(image, ref["image"], atol=1e-5)    # 2 actors, same seeded init, rows in item order
    np.testing.assert_allclose(text, ref["text"], atol=1e-5)
    broken = [UNDECODABLE, NO_IMAGE, MISSING_FILE]
    assert np.all(image[broken] == 0) and np.all(text[broken] != 0)        # text survives a bad image
    assert np.all(text[NO_TEXT] == 0) and np.all(image[NO_TEXT] != 0)
    assert np.count_nonzero(np.abs(image).sum(axis=1) == 0) == 3
    table = pq.read_table(folder / "items.parquet")
    assert table["item"].to_pylist() == list(range(n))
    status = table["image_status"].to_pylist()
    assert [status[i] for i in broken] == ["undecodable", "missing", "missing"]
    assert table["image_ok"].to_pylist().count(False) == 3 and not table["text_ok"][NO_TEXT].as_py()
    np.testing.assert_array_equal(np.array(table["image"].to_pylist(), np.float32), image)
    m = json.loads((folder / "manifest.json").read_text())
    assert m["modalities"] == ["text", "image"] and m["dims"] == {"text": 64, "image": 64}
    assert m["counts"] == {"items": n, "image_ok": n - 3, "image_missing": 2, "image_undecodable": 1,
                                "text_missing": 1}
    assert m["checkpoint_hash"].startswith("random:")


def test_extraction_is_logged_to_mlflow(extracted):
    import mlflow

    _, tracking, results = extracted
    mlflow.set_tracking_uri(tracking.uri)
    runs = mlflow.search_runs(experiment_names=[tracking.experiment])
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["metrics.features/image_missing"] == 2 and run["metrics.features/image_undecodable"] == 1
    assert run["metrics.quality/item_cf/recall_at_20"] == pytest.approx(results["clip"].quality["item_cf/recall@20"])
    assert "metrics.quality/mask_text_50/zero_shot/recall_at_10" in run
    assert run["params.method"] == "clip"


def test_extracted_features_beat_random_features_on_both_protocols(extracted):
    from raymmrec.features.quality import quality_report
    from raymmrec.features.random_set import write_random_features

    root, _, results = extracted
    # chance level of this set: the best of three random feature sets of the same shape
    chance = {}
    for seed in range(3):
        write_random_features(root, f"random{seed}", {"text": 64, "image": 64}, seed=seed)
        q = quality_report(root, f"random{seed}", QualityConfig(ks=[10, 20], mask_modalities=[]))
        for proto in ("zero_shot", "item_cf"):
            chance[proto] = max(chance.get(proto, 0.0), q[f"{proto}/recall@20"])
    for name in ("clip", "cliper", "beit3"):
        for proto in ("zero_shot", "item_cf"):
            # even randomly initialised encoders keep the planted colour / word clusters of the generated items
            assert results[name].quality[f"{proto}/recall@20"] > 1.2 * chance[proto], (name, proto)


def test_cliper_views_weights_and_missing_fields(extracted):
    root, _, results = extracted
    folder = results["cliper"].folder
    table = pq.read_table(folder / "items.parquet")
    present = np.array(table["view_present"].to_pylist())
    weights = np.array(table["view_weight"].to_pylist())
    sims = np.array(table["view_similarity"].to_pylist())
    assert present[NO_BRAND_DESC].tolist() == [True, False, True, False, True]
    assert not present[NO_TEXT].any() and np.all(weights[NO_TEXT] == 0)
    has_text = present.any(axis=1)
    assert np.allclose(weights[has_text].sum(axis=1), 1.0, atol=1e-5)
    assert np.all(weights[~present] == 0)
    ok = table["image_ok"].to_numpy(zero_copy_only=False) & present.all(axis=1)
    i = int(np.flatnonzero(ok)[0])
    assert list(np.argsort(-weights[i])) == list(np.argsort(-sims[i]))
    # SA: the text feature is the similarity-weighted sum of the view embeddings
    views = np.load(folder / "views" / "text_views.npy")
    text = np.load(folder / "text.npy")
    np.testing.assert_allclose(text, np.einsum("ncd,nc->nd", views, weights), atol=1e-5)
    assert np.allclose(weights[UNDECODABLE][present[UNDECODABLE]], 1 / present[UNDECODABLE].sum())   # no image
    m = json.loads((folder / "manifest.json").read_text())
    assert m["counts"]["view_brand"] < m["counts"]["view_title"] and m["cliper"]["tau"] == 0.1


def test_beit3_unified_feature_is_one_modality(extracted):
    root, _, results = extracted
    folder = results["beit3"].folder
    fused = np.load(folder / "fused.npy")
    n = pq.read_metadata(root / schema.ITEMS_FILE).num_rows
    assert fused.shape == (n, 64)
    assert json.loads((folder / "manifest.json").read_text())["modalities"] == ["fused"]
    text_only, image_only = np.load(folder / "views" / "text_only.npy"), np.load(folder / "views" / "image_only.npy")
    np.testing.assert_allclose(fused[NO_IMAGE], text_only[NO_IMAGE], atol=1e-6)       # no image: text CLS
    np.testing.assert_allclose(fused[NO_TEXT], image_only[NO_TEXT], atol=1e-6)         # no text: image CLS
    both = np.setdiff1d(np.arange(n), [UNDECODABLE, NO_IMAGE, MISSING_FILE, NO_TEXT])
    assert not np.allclose(fused[both], text_only[both], atol=1e-3)                   # the fused pass differs
    assert "mask_vision_50/zero_shot/recall@20" in results["beit3"].quality


def test_every_multimodal_backbone_trains_on_every_feature_set(extracted):
    from raymmrec.recsys.interaction_data import InteractionData
    from raymmrec.recsys.registry import get_model, model_names
    from raymmrec.recsys.trainer import TrainerConfig, train_model

    root, _, _ = extracted
    models = [m for m in model_names() if get_model(m).model_cls.needs_features]
    assert {"vbpr", "freedom"} <= set(models)
    for name in ("clip", "cliper", "beit3"):
        data = InteractionData.from_dataset_dir(root, features=name)
        assert list(data.features) == (["fused"] if name == "beit3" else ["text", "image"])
        for model in models:
            result = train_model(model, {}, TrainerConfig(epochs=1, batch_size=256, eval_batch_size=128,
                                                          num_threads=1), data)
            assert np.isfinite(result.history[-1]["train_loss"]), (model, name)
