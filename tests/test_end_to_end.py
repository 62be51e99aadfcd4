"""End-to-end (ETE) training: the encoder re-embeds items in the loop and the recommendation loss updates it."""
from pathlib import Path

import numpy as np
import pytest
import torch
from ray_faults import kill_a_worker_once_checkpointed

from raymmrec.data.synth import SynthConfig, generate_dataset
from raymmrec.encoders import load_encoder
from raymmrec.errors import ConfigError
from raymmrec.features import read_manifest
from raymmrec.recommendations import RecommendConfig, read_recommendations, write_recommendations
from raymmrec.recsys.checkpoint import load_checkpoint
from raymmrec.recsys.end_to_end import (EndToEndConfig, encode_all, encode_items, encoder_source, end_to_end_setup,
                                        preprocess_dataset_items, text_plan)
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.registry import get_model
from raymmrec.recsys.sampling import BPRSampler
from raymmrec.recsys.train_backbone import TrainBackboneConfig, train_backbone
from raymmrec.recsys.trainer import TrainerConfig, train_model

TRAINER = dict(batch_size=512, lr=0.01, eval_batch_size=512, num_threads=1, seed=3)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return generate_dataset(SynthConfig(size="tiny", seed=0), tmp_path_factory.mktemp("ete") / "ds").root


def _setup(dataset_dir, encoder_lr, model="vbpr"):
    data = InteractionData.load(dataset_dir, None)
    return end_to_end_setup(EndToEndConfig(encoder_lr=encoder_lr), data, get_model(model).model_cls)


def _encoder_of(wrap_model, data, model="vbpr"):
    """The encoder object the wrapper trains (captured before training, to snapshot its weights)."""
    probe = wrap_model(get_model(model).build(None, data))
    return probe.encoder


@pytest.mark.parametrize("model", ["vbpr", "mmgcn"])
def test_ete_updates_the_encoder_and_the_loss_falls(dataset_dir, model):
    data, wrap = _setup(dataset_dir, encoder_lr=1e-3, model=model)
    encoder = _encoder_of(wrap, data, model)
    before = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    result = train_model(model, None, TrainerConfig(epochs=3, **TRAINER), data, wrap_model=wrap)
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < 0.97 * losses[0], losses
    after = result.model.encoder.state_dict()
    changed = [k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])]
    # both towers moved: the image and the text embeddings feed VBPR's loss
    assert any(k.startswith("model.visual.") for k in changed) and any(k.startswith("model.transformer.") for k in changed)


def test_frozen_encoder_is_pt_on_its_features(dataset_dir):
    """encoder_lr=0 leaves the encoder untouched and trains exactly like pt on the features it extracts."""
    data, wrap = _setup(dataset_dir, encoder_lr=0.0)
    encoder = _encoder_of(wrap, data)
    before = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    cfg = TrainerConfig(epochs=2, **TRAINER)
    ete = train_model("vbpr", None, cfg, data, wrap_model=wrap)
    pt = train_model("vbpr", None, cfg, data)     # data.features = the encoder's extracted features, fixed
    assert all(torch.equal(v, ete.model.encoder.state_dict()[k]) for k, v in before.items())
    np.testing.assert_allclose([r["train_loss"] for r in ete.history], [r["train_loss"] for r in pt.history],
                               rtol=1e-4)
    assert ete.best_valid["recall@20"] == pytest.approx(pt.best_valid["recall@20"], abs=1e-6)


def test_backbone_sees_the_encoders_output_and_gradients_reach_it(dataset_dir):
    data, wrap = _setup(dataset_dir, encoder_lr=1e-3)
    torch.manual_seed(0)
    model = wrap(get_model("vbpr").build(None, data))
    model.train()
    model.pre_epoch(1)
    batch = next(iter(BPRSampler(data, 64, 0, True, torch.device("cpu")).epoch()))
    loss = model.loss(batch)
    items = torch.unique(torch.cat([batch.pos_items, batch.neg_items]))
    expected = encode_items(model.encoder, model.inputs, items)
    seen = model.backbone.item_features[items]
    torch.testing.assert_close(seen, torch.cat([expected["text"], expected["image"]], dim=1))
    assert seen.requires_grad
    loss.backward()
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    # evaluation re-encodes every item with the current encoder
    model.eval()
    model.full_scores(torch.arange(4))
    full = encode_all(model.encoder, model.inputs)
    torch.testing.assert_close(model.backbone.item_features, torch.cat([full["text"], full["image"]], dim=1))


def test_job_with_paradigm_ete_and_unsupported_model(dataset_dir, tmp_path, mlflow_store):
    cfg = TrainBackboneConfig(model="vbpr", data=str(dataset_dir), paradigm="ete", output=str(tmp_path / "out"),
                              trainer=TrainerConfig(epochs=1, **TRAINER), tracking=mlflow_store)
    lines: list[str] = []
    result = train_backbone(cfg, out=lines.append)
    assert result.epochs_run == 1 and "-ete" in result.checkpoint_dir
    assert any("features {'text': [" in line for line in lines)
    # the checkpoint holds the encoder too: one more epoch resumes from it
    cfg.trainer.epochs = 2
    lines.clear()
    again = train_backbone(cfg, out=lines.append)
    assert any(line.startswith("resuming from") for line in lines) and again.checkpoint_dir == result.checkpoint_dir
    assert [r["epoch"] for r in again.history] == [1, 2]
    assert any(k.startswith("encoder.") for k in again.model.state_dict())
    # the run's outputs for stages 3 and 5: a normal feature set, the encoder as a stage-2 dir, both named in best.pt
    state = load_checkpoint(again.best_checkpoint)
    # inside the run's own checkpoint dir: the dataset dir is left as it was
    assert state["paradigm"] == "ete" and Path(state["feature_set"]).name.startswith("ete-")
    assert Path(state["feature_set"]).parent == Path(again.best_checkpoint).parent.resolve()
    assert not list((Path(dataset_dir) / "features").glob("ete-*"))
    manifest = read_manifest(state["feature_set"])
    assert manifest["method"] == "ete" and manifest["modalities"] == ["text", "image"]
    _assert_features_are_the_encoders(dataset_dir, state)
    cfg.model = "lightgcn"
    with pytest.raises(ConfigError, match="model 'lightgcn' does not support paradigm=ete"):
        train_backbone(cfg, out=lines.append)


def _assert_features_are_the_encoders(dataset_dir, state) -> None:
    """The published feature set is the published encoder's output (what the backbone was evaluated on)."""
    encoder = load_encoder(state["encoder_dir"]).eval()
    source = encoder_source(EndToEndConfig())
    data = InteractionData.load(dataset_dir, state["feature_set"])
    inputs = preprocess_dataset_items(dataset_dir, source.config, text_plan(EndToEndConfig(), "clip"), data.n_items)
    expected = encode_all(encoder, inputs)
    for m in ("text", "image"):
        np.testing.assert_allclose(data.features[m], expected[m].numpy(), atol=1e-5)


def _ray_job(dataset_dir, out: Path, tracking, epochs: int, zero_stage: int) -> TrainBackboneConfig:
    # reg_weight 0: VBPR's regulariser (norms over the batch) is the one term that does not split over rows
    cfg = TrainBackboneConfig(model="vbpr", data=str(dataset_dir), paradigm="ete", params={"reg_weight": 0.0},
                              end_to_end=EndToEndConfig(encoder_lr=1e-3, num_workers=2), output=str(out),
                              trainer=TrainerConfig(epochs=epochs, **TRAINER), tracking=tracking)
    cfg.end_to_end.deepspeed.zero_stage = zero_stage
    return cfg


@pytest.fixture(scope="module")
def in_process_run(dataset_dir):
    """The same training in one process (torch Adam on both parts)."""
    data, wrap = _setup(dataset_dir, encoder_lr=1e-3)
    return train_model("vbpr", {"reg_weight": 0.0}, TrainerConfig(epochs=2, **TRAINER), data, wrap_model=wrap)


def test_two_ray_train_workers_under_zero3_train_as_one_process_and_feed_recommend(dataset_dir, in_process_run,
                                                                                  ray_local, mlflow_store, tmp_path):
    result = train_backbone(_ray_job(dataset_dir, tmp_path / "out", mlflow_store, 2, zero_stage=3), out=print)
    losses = [h["train_loss"] for h in result.history]
    # each worker trains on half of every batch: weighted losses + averaged gradients make it the 1-process step
    np.testing.assert_allclose(losses, [h["train_loss"] for h in in_process_run.history], rtol=1e-4)
    np.testing.assert_allclose([h["valid/recall@20"] for h in result.history],
                               [h["valid/recall@20"] for h in in_process_run.history], atol=1e-6)
    assert losses[1] < 0.9 * losses[0]
    state = load_checkpoint(result.best_checkpoint)
    initial = encoder_source(EndToEndConfig()).build().state_dict()
    moved = [k for k, v in initial.items() if v.is_floating_point() and not torch.equal(v, state["model"][f"encoder.{k}"])]
    assert any(k.startswith("model.visual.") for k in moved) and any(k.startswith("model.transformer.") for k in moved)
    _assert_features_are_the_encoders(dataset_dir, state)

    # stage 5 on the ETE checkpoint alone: it names its dataset and feature set
    out = write_recommendations(RecommendConfig(checkpoint=result.best_checkpoint, k=5, cold_k=3, output=str(tmp_path / "recs"),
                                    tracking=mlflow_store), out=print)
    data = InteractionData.load(dataset_dir, None)
    table = read_recommendations(out).to_pylist()
    assert len(table) == data.n_users
    for row in table:
        assert len(row["items"]) == 5 and not set(row["items"]) & set(data.train[row["user"]].indices)


def test_killed_ray_train_worker_resumes_from_the_last_checkpoint(dataset_dir, in_process_run, ray_local,
                                                                  mlflow_store, tmp_path):
    import mlflow

    with kill_a_worker_once_checkpointed(tmp_path / "out") as killed:
        result = train_backbone(_ray_job(dataset_dir, tmp_path / "out", mlflow_store, 2, zero_stage=2), out=print)
    assert killed, "no worker was killed (no checkpoint was registered?)"
    # model, both optimizers, sampler and RNG come back: the same run as an uninterrupted one
    assert [h["epoch"] for h in result.history] == [1, 2]
    np.testing.assert_allclose([h["train_loss"] for h in result.history],
                               [h["train_loss"] for h in in_process_run.history], rtol=1e-4)
    runs = mlflow.search_runs(experiment_names=[mlflow_store.experiment])
    assert runs["metrics.resumed_at_epoch"].iloc[0] == 1
