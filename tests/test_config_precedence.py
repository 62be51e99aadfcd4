"""What a config says is what runs: stage keys cover every computed field, explicit values beat model defaults,
a job's missing default YAML is an error (issue 14, bugs 1, 2 and 6)."""
from dataclasses import dataclass

import pytest

from raymmrec.config import load_config
from raymmrec.errors import ConfigError
from raymmrec.pipeline import PipelineConfig, stage_key
from raymmrec.recsys.registry import get_model
from raymmrec.recsys.trainer import TrainerConfig, with_model_defaults


def test_pretrain_data_section_is_part_of_the_stage_key_but_its_source_path_is_not():
    base = PipelineConfig()
    key = stage_key(base, "pretrain", ["k"])
    for override in ("pretrain.data.batch_size=7", "pretrain.data.augment=false", "pretrain.data.mask_seed=3",
                     "pretrain.data.text_fields=[title]"):
        assert stage_key(load_config(PipelineConfig, [override]), "pretrain", ["k"]) != key, override
    # the pipeline fills data.source from the prepare stage; the upstream key already stands for it
    assert stage_key(load_config(PipelineConfig, ["pretrain.data.source=/elsewhere"]), "pretrain", ["k"]) == key
    # a stage's input path (a string `data`) stays out as before
    # prepare's `source` is the kind of source, not a path: it stays in the key
    assert stage_key(load_config(PipelineConfig, ["prepare.source=amazon2023"]), "prepare", []) != \
        stage_key(load_config(PipelineConfig, ["prepare.source=synth"]), "prepare", [])
    tune = stage_key(load_config(PipelineConfig, ["tune.data=/here"]), "tune", ["k"])
    assert stage_key(load_config(PipelineConfig, ["tune.data=/elsewhere"]), "tune", ["k"]) == tune
    assert stage_key(load_config(PipelineConfig, ["tune.data=/here", "tune.trainer.lr=0.5"]), "tune", ["k"]) != tune


def test_an_explicit_trainer_value_wins_over_the_models_default_even_when_it_equals_the_global_one():
    alignrec = get_model("alignrec").model_cls
    assert with_model_defaults(alignrec, TrainerConfig(patience=20)).patience == 20
    assert with_model_defaults(alignrec, TrainerConfig(lr_scheduler=[1.0, 50.0])).lr_scheduler == [1.0, 50.0]
    # unset fields take the model's default, else the global one
    assert with_model_defaults(alignrec, TrainerConfig()).patience == 30
    assert with_model_defaults(get_model("bpr").model_cls, TrainerConfig()).patience == 20
    # the same through YAML / CLI: `trainer.patience=20` is explicit
    from raymmrec.recsys.train_backbone import TrainBackboneConfig

    cfg = load_config(TrainBackboneConfig, ["model=alignrec", "trainer.patience=20"])
    assert with_model_defaults(alignrec, cfg.trainer).patience == 20


def test_a_missing_default_yaml_is_a_clear_error(tmp_path):
    @dataclass
    class Small:
        x: int = 1

    with pytest.raises(ConfigError, match="nope.yaml' does not exist"):
        load_config(Small, ["x=2"], default_yaml=tmp_path / "nope.yaml")
    (tmp_path / "ok.yaml").write_text("x: 3\n")
    assert load_config(Small, [], default_yaml=tmp_path / "ok.yaml").x == 3
