import math

import pytest
import torch

from raymmrec.errors import ConfigError
from raymmrec.recsys.models.bpr import BPR
from raymmrec.recsys.trainer import EarlyStopping, TrainerConfig, train_model
from raymmrec.recsys.metrics import full_ranking_metrics
from raymmrec.recsys.sampling import BPRSampler
from recsys_planted import FAST_TRAINER, tiny_data


def test_early_stopping_rule_is_mmrecs():
    stop = EarlyStopping(patience=2)
    # strictly greater improves; ties do not; stop once the non-improving count exceeds patience
    assert stop.update(0.0) == (True, False)          # initial best is −1
    assert stop.update(0.5) == (True, False)
    assert stop.update(0.5) == (False, False)
    assert stop.update(0.4) == (False, False)
    assert stop.update(0.5) == (False, True)           # third non-improving evaluation > patience 2
    again = EarlyStopping(patience=0)
    assert again.update(0.1) == (True, False) and again.update(0.1) == (False, True)


def test_flat_validation_stops_after_patience_plus_one_evaluations():
    cfg = TrainerConfig(epochs=50, patience=3, **{**FAST_TRAINER, "lr": 0.0})
    result = train_model("bpr", {}, cfg, tiny_data())
    assert result.stop_reason == "early_stopped"
    assert result.best_epoch == 1 and result.epochs_run == 1 + 3 + 1
    assert result.history[-1]["should_stop"] and result.history[-1]["stop_reason"] == "early_stopped"


def test_eval_every_and_test_metrics_at_the_best_epoch():
    records = []
    result = train_model("lightgcn", {}, TrainerConfig(epochs=6, eval_every=2, patience=50, **FAST_TRAINER),
                         tiny_data(), report=records.append)
    assert [("valid/recall@20" in r) for r in records] == [False, True, False, True, False, True]
    best = next(r for r in records if r["epoch"] == result.best_epoch)
    assert result.test_at_best["recall@20"] == best["test/recall@20"]
    assert records[-1]["best/test/recall@20"] == best["test/recall@20"]
    assert result.stop_reason == "finished" and records[-1]["should_stop"]
    # The returned model holds the best epoch's weights.
    again = full_ranking_metrics(result.model.full_scores, tiny_data(), "test")
    assert again["recall@20"] == pytest.approx(result.test_at_best["recall@20"])


def test_checkpoint_of_another_config_is_refused(tmp_path):
    data = tiny_data()
    train_model("bpr", {}, TrainerConfig(epochs=1, **FAST_TRAINER), data, checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="holds a run of another config"):
        train_model("bpr", {"reg_weight": 0.5}, TrainerConfig(epochs=1, **FAST_TRAINER), data, checkpoint_dir=tmp_path)


@pytest.mark.parametrize("nan_epoch,at", [(3, "first"), (2, "last")])
def test_nan_loss_stops_with_its_reason(monkeypatch, nan_epoch, at):
    data = tiny_data()
    cfg = TrainerConfig(epochs=10, patience=50, **FAST_TRAINER)
    per_epoch = -(-data.n_train // cfg.batch_size)              # every positive once per epoch, in full batches
    assert sum(1 for _ in BPRSampler(data, cfg.batch_size).epoch()) == per_epoch
    # the first loss call of epoch `nan_epoch`, or the last one of it
    nan_call = (nan_epoch - 1) * per_epoch + 1 if at == "first" else nan_epoch * per_epoch
    calls = {"n": 0}
    original = BPR.loss

    def loss(self, batch):
        calls["n"] += 1
        value = original(self, batch)
        return value * float("nan") if calls["n"] >= nan_call else value

    monkeypatch.setattr(BPR, "loss", loss)
    records = []
    result = train_model("bpr", {}, cfg, data, report=records.append)
    assert result.stop_reason == "nan_loss" and result.epochs_run == nan_epoch
    assert calls["n"] == nan_call                                # the epoch ends at its first non-finite loss
    assert [r["epoch"] for r in records] == list(range(1, nan_epoch + 1))
    assert all(math.isfinite(r["train_loss"]) for r in records[:-1]) and math.isnan(records[-1]["train_loss"])
    assert "valid/recall@20" not in records[-1]                  # a NaN epoch is not evaluated
    assert result.best_epoch == max(r["epoch"] for r in records if r["improved"]) < nan_epoch


def test_report_returning_true_stops_training():
    result = train_model("bpr", {}, TrainerConfig(epochs=10, **FAST_TRAINER), tiny_data(),
                         report=lambda r: r["epoch"] >= 2)
    assert result.stop_reason == "stopped_by_report" and result.epochs_run == 2


def test_trainer_config_errors():
    with pytest.raises(ConfigError, match="valid_metric 'recall@5' is not computed"):
        train_model("bpr", {}, TrainerConfig(valid_metric="recall@5"), tiny_data())
    with pytest.raises(ConfigError, match="unknown model 'lightgnc'"):
        train_model("lightgnc", {}, TrainerConfig(), tiny_data())


def test_training_from_an_object_ref(ray_local):
    data = tiny_data()
    for modality in data.features:
        data.knn_graph(modality, 10)                 # built once, shipped with the data to every trial
    ref = data.put()

    @ray_local.remote
    def trial(ref):
        import warnings

        from raymmrec.recsys.interaction_data import InteractionData

        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*not writable")   # shared arrays are read-only
            resolved = InteractionData.resolve(ref)
            return len(resolved.item_graphs), train_model(
                "freedom", {}, TrainerConfig(epochs=1, **FAST_TRAINER), resolved).summary()

    graphs, summary = ray_local.get(trial.remote(ref))
    assert graphs == 2 and summary["epochs_run"] == 1 and summary["best_valid"]["recall@20"] > 0


def test_model_trainer_defaults_fill_only_fields_left_unset():
    from raymmrec.recsys.registry import get_model
    from raymmrec.recsys.trainer import with_model_defaults

    lattice = get_model("lattice").model_cls
    assert with_model_defaults(lattice, TrainerConfig()).lr_scheduler == [0.96, 50.0]      # MMRec's LATTICE yaml
    assert with_model_defaults(lattice, TrainerConfig(lr_scheduler=[0.5, 10.0])).lr_scheduler == [0.5, 10.0]
    assert with_model_defaults(get_model("alignrec").model_cls, TrainerConfig(patience=5)).patience == 5
    assert with_model_defaults(get_model("bpr").model_cls, TrainerConfig()) == TrainerConfig(lr_scheduler=[1.0, 50.0],
                                                                                             patience=20)
