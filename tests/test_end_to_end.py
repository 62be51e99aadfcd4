"""End-to-end (ETE) training: the encoder re-embeds items in the loop and the recommendation loss updates it."""
import numpy as np
import pytest
import torch

from raymmrec.data.synth import SynthConfig, generate_dataset
from raymmrec.errors import ConfigError
from raymmrec.recsys.end_to_end import EndToEndConfig, encode_all, encode_items, end_to_end_setup
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
    cfg.model = "lightgcn"
    with pytest.raises(ConfigError, match="model 'lightgcn' does not support paradigm=ete"):
        train_backbone(cfg, out=lines.append)
