"""Names are found whatever their case, and every name and parameter is checked before any work (issue 14, bugs 3-4)."""
import pytest

from raymmrec.errors import ConfigError
from raymmrec.recsys.models.bpr import BPR
from raymmrec.recsys.registry import _REGISTRY, get_model, model_names, register_model


def test_a_model_registered_with_capitals_is_found_by_any_case():
    try:
        @register_model("MixedCaseBPR")
        class MixedCaseBPR(BPR):
            pass

        assert get_model("MixedCaseBPR").model_cls is MixedCaseBPR
        assert get_model("mixedcasebpr").model_cls is MixedCaseBPR
        assert "mixedcasebpr" in model_names() and MixedCaseBPR.name == "mixedcasebpr"
    finally:
        _REGISTRY.pop("mixedcasebpr", None)
        _REGISTRY.pop("MixedCaseBPR", None)


@pytest.mark.parametrize("override, message", [("model=lightgnc", "unknown model 'lightgnc'"),
                                               ("params={n_layerz: 2}", "n_layerz"),
                                               ("trainer.valid_metric=recall@7", "is not computed"),
                                               ("paradigm=ete", "does not support paradigm=ete")])
def test_train_backbone_rejects_bad_names_before_generating_data(tmp_path, override, message):
    from raymmrec.config import load_config
    from raymmrec.recsys.train_backbone import TrainBackboneConfig, train_backbone

    cfg = load_config(TrainBackboneConfig, [f"output={tmp_path / 'out'}", "tracking.enabled=false",
                                            "model=lightgcn", override])
    with pytest.raises(ConfigError, match=message):
        train_backbone(cfg, out=lambda line: None)
    assert not (tmp_path / "out").exists()      # nothing generated, nothing written


def test_pipeline_rejects_an_unknown_tune_model_before_preparing(tmp_path):
    from raymmrec.config import load_config
    from raymmrec.pipeline import Pipeline, PipelineConfig

    with pytest.raises(ConfigError, match="unknown model 'freedon'"):
        Pipeline(load_config(PipelineConfig, [f"workdir={tmp_path / 'w'}", "tune.models=[lightgcn,freedon]"]))
    with pytest.raises(ConfigError, match="grace_period"):
        Pipeline(load_config(PipelineConfig, [f"workdir={tmp_path / 'w'}", "tune.search.grace_period=0"]))
    assert not (tmp_path / "w").exists()


def test_pretraining_placement_strategy_is_checked_and_reaches_ray_train():
    from raymmrec.pretrain.stage import PretrainConfig, check_config
    from raymmrec.runtime import torch_trainer_settings

    with pytest.raises(ConfigError, match="placement_strategy"):
        check_config(PretrainConfig(placement_strategy="spread-out"))
    settings = torch_trainer_settings("run", "/tmp/x", 2, False, 0.5, 1, "SPREAD")
    assert settings["scaling_config"].placement_strategy == "SPREAD"
