"""A search over feature sets: content models train on every set with the same draws, ID-only models once."""
import json

import mlflow
import numpy as np
import pytest
import torch

from raymmrec.errors import ConfigError
from raymmrec.recsys.trainer import TrainerConfig
from raymmrec.tune.algorithms import SearchConfig
from raymmrec.tune.search import TuneBackbonesConfig, load_feature_sets, tune_backbones
from recsys_planted import FAST_TRAINER, planted, write_dataset_dir, write_mmrec_folder


def _dataset_with_noise_set(tmp_path):
    """The planted tiny set's raw features, and a second set of pure noise with other widths."""
    p = planted()
    root = write_dataset_dir(p, tmp_path / "ds")
    noise = tmp_path / "noise-set"
    noise.mkdir()
    rng = np.random.default_rng(0)
    for name, dim in (("text", 5), ("image", 7)):
        np.save(noise / f"{name}.npy", rng.standard_normal((p.n_items, dim)).astype(np.float32))
    return root, noise


def test_content_models_search_every_feature_set_with_the_same_draws(ray_local, mlflow_store, tmp_path):
    root, noise = _dataset_with_noise_set(tmp_path)
    cfg = TuneBackbonesConfig(
        models=["bpr", "vbpr"], data=str(root), features="raw", feature_sets=[str(noise)],
        spaces={"bpr": {"reg_weight": {"grid": [0.0, 1e-4]}}, "vbpr": {"reg_weight": {"grid": [0.0, 1e-4, 1e-3]}}},
        search=SearchConfig(algorithm="random", num_samples=2, scheduler="fifo", cpus_per_trial=0.5),
        trainer=TrainerConfig(epochs=6, patience=50, **FAST_TRAINER), name="sets", output=str(tmp_path / "out"),
        tracking=mlflow_store)
    result = tune_backbones(cfg)

    assert result.complete and result.expected_trials == {"bpr": 2, "vbpr": 4}
    bpr = [r for r in result.trials if r.model == "bpr"]
    vbpr = [r for r in result.trials if r.model == "vbpr"]
    assert len(bpr) == 2 and all("features" not in r.config for r in bpr)
    # each drawn reg_weight once on each set: a paired comparison
    pairs = sorted((r.config["reg_weight"], r.config["features"]) for r in vbpr)
    draws = sorted({w for w, _ in pairs})
    assert len(draws) == 2 and pairs == sorted((w, s) for w in draws for s in ("noise-set", "raw"))
    # each trial trained on its own set: the best checkpoint's item projection reads that set's width
    best = result.best["vbpr"]
    ref = result.features_of(best, cfg.features)
    assert ref == {"raw": "raw", "noise-set": str(noise)}[best.config["features"]]
    width = {"raw": 16 + 24, "noise-set": 5 + 7}[best.config["features"]]
    weights = torch.load(result.best_checkpoints["vbpr"], map_location="cpu", weights_only=False)["model"]
    assert any(t.ndim == 2 and t.shape[1] == width for t in weights.values())
    logged = mlflow.MlflowClient().get_run(result.run_id).data.params
    assert json.loads(logged["data.feature_sets"]) == [str(noise)] and logged["data.features"] == "raw"
    # the planted content carries the signal; noise does not: raw wins on average over the paired draws
    mean = {s: np.mean([r.score for r in vbpr if r.config["features"] == s]) for s in ("raw", "noise-set")}
    assert mean["raw"] > mean["noise-set"], mean


def test_feature_sets_are_checked_before_any_trial(tmp_path):
    root, noise = _dataset_with_noise_set(tmp_path)
    from raymmrec.recsys.interaction_data import InteractionData

    data = InteractionData.load(root, "raw")
    with pytest.raises(ConfigError, match="already searched as feature set 'raw'"):
        load_feature_sets(TuneBackbonesConfig(features="raw", feature_sets=["raw"]), str(root), data)
    folder = write_mmrec_folder(planted(), tmp_path / "mm")
    with pytest.raises(ConfigError, match="MMRec folder, which holds one feature set"):
        load_feature_sets(TuneBackbonesConfig(features="raw", feature_sets=[str(noise)]), str(folder),
                          InteractionData.load(folder))
    sets = load_feature_sets(TuneBackbonesConfig(features="raw", feature_sets=[str(noise)]), str(root), data)
    assert list(sets) == ["raw", "noise-set"] and sets["noise-set"].features["text"].shape[1] == 5
