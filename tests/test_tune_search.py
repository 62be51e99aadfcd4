import mlflow

from raymmrec.recsys.trainer import TrainerConfig
from raymmrec.tracking import TrackingConfig
from raymmrec.tune.algorithms import SearchConfig
from raymmrec.tune.search import TuneBackbonesConfig, tune_backbones
from recsys_planted import FAST_TRAINER, tiny_data

MAX_EPOCHS = 8


def test_asha_prunes_clearly_bad_configs_and_the_best_trial_is_the_best_valid(ray_local, mlflow_store, tmp_path):
    # lr = 0 never learns. ASHA cannot stop the first two trials to reach a rung, so in any grid order at least
    # two of the four still configs reach the first rung after a learning one has set its cutoff, and are cut there.
    cfg = TuneBackbonesConfig(
        models=["bpr"], spaces={"bpr": {"trainer.lr": {"grid": [0.05, 0.01, 0.0, 0.0, 0.0, 0.0]}}},
        search=SearchConfig(grace_period=2, reduction_factor=2, max_concurrent_trials=2, cpus_per_trial=0.5),
        trainer=TrainerConfig(epochs=MAX_EPOCHS, patience=50, **{**FAST_TRAINER, "lr": 0.01}),
        name="asha", output=str(tmp_path / "out"), tracking=mlflow_store)
    lines = []
    result = tune_backbones(cfg, data=tiny_data(), out=lines.append)

    assert result.complete and len(result.trials) == 6
    still = [r for r in result.trials if r.config["trainer.lr"] == 0.0]
    pruned = [r for r in still if r.stop_reason == "pruned"]
    assert len(pruned) >= 2 and all(r.epochs < MAX_EPOCHS for r in pruned)
    assert result.trial_epochs < 6 * MAX_EPOCHS
    # The best trial is the one whose best valid Recall@20 is highest, and it learns.
    best = result.best["bpr"]
    assert best.score == max(r.score for r in result.trials) and best.config["trainer.lr"] > 0
    assert best.stop_reason == "finished" and best.epochs == MAX_EPOCHS
    assert best.valid["recall@20"] == best.score > max(r.score for r in still)
    assert result.best_checkpoints["bpr"].endswith("best.pt")

    # MLflow: the parent run, one child per trial with its stop reason and per-epoch metrics.
    client = mlflow.MlflowClient()
    children = client.search_runs([client.get_run(result.run_id).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert len(children) == 6 and all(c.info.status == "FINISHED" for c in children)
    by_trial = {c.data.tags["trial_id"]: c for c in children}
    for row in result.trials:
        run = by_trial[row.trial_id]
        assert run.data.tags["stop_reason"] == row.stop_reason
        assert float(run.data.params["trainer.lr"]) == row.config["trainer.lr"]
        history = client.get_metric_history(run.info.run_id, "valid/recall_at_20")
        assert sorted(m.step for m in history) == list(range(1, row.epochs + 1))
    logged_best = max(children, key=lambda c: c.data.metrics["best/valid/recall_at_20"])
    assert logged_best.data.tags["trial_id"] == best.trial_id
    assert [a.path for a in client.list_artifacts(logged_best.info.run_id, "checkpoint")] == ["checkpoint/best.pt"]
    parent_files = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"leaderboard.json", "trials.json", "learning_curves.png", "best_checkpoint"} <= parent_files
    assert client.get_run(result.run_id).data.tags["best_trial"] == best.trial_id

    text = "\n".join(lines)
    assert "bpr: 6 trials" in text and "pruned" in text and f"trainer.lr={best.config['trainer.lr']}" in text


def test_sync_halving_pauses_every_config_at_a_rung_then_resumes_only_the_best(ray_local, mlflow_store, tmp_path):
    # Rungs at 2 and 6 of 8 epochs, rf 3: all 6 configs to 2, the best 2 to 6, the best of those to 8.
    cfg = TuneBackbonesConfig(
        models=["bpr"], spaces={"bpr": {"trainer.lr": {"grid": [0.05, 0.01, 0.0, 0.0, 0.0, 0.0]}}},
        search=SearchConfig(scheduler="sync_halving", grace_period=2, reduction_factor=3, cpus_per_trial=0.5),
        trainer=TrainerConfig(epochs=MAX_EPOCHS, patience=50, **{**FAST_TRAINER, "lr": 0.01}),
        name="sync", output=str(tmp_path / "out"), tracking=mlflow_store)
    result = tune_backbones(cfg, data=tiny_data(), out=lambda _: None)

    assert result.complete and len(result.trials) == 6
    assert sorted(r.epochs for r in result.trials) == [2, 2, 2, 2, 6, 8]
    assert result.trial_epochs == 6 * 2 + 2 * 4 + 2
    assert all(r.epochs == 2 and r.stop_reason == "pruned" for r in result.trials if r.config["trainer.lr"] == 0.0)
    best = result.best["bpr"]
    assert best.config["trainer.lr"] > 0 and best.epochs == MAX_EPOCHS and best.stop_reason == "finished"
    # Paused at epochs 2 and 6 and resumed from its checkpoint: every epoch logged once, in order.
    client = mlflow.MlflowClient()
    child = client.search_runs([client.get_run(result.run_id).info.experiment_id],
                               f"tags.trial_id = '{best.trial_id}'")[0]
    history = client.get_metric_history(child.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == list(range(1, MAX_EPOCHS + 1))


def test_a_fixed_trainer_key_applies_to_its_model_only(ray_local, tmp_path):
    # `params` may fix trainer keys per model ("trainer.epochs"), as `spaces` may search them
    cfg = TuneBackbonesConfig(
        models=["bpr", "lightgcn"], spaces={"bpr": {"reg_weight": {"grid": [0.0]}},
                                            "lightgcn": {"reg_weight": {"grid": [0.0]}}},
        params={"lightgcn": {"trainer.epochs": 1, "n_layers": 1}},
        search=SearchConfig(scheduler="fifo", cpus_per_trial=0.5),
        trainer=TrainerConfig(epochs=3, patience=50, **FAST_TRAINER), name="fixed_trainer",
        output=str(tmp_path / "out"), tracking=TrackingConfig(enabled=False))
    result = tune_backbones(cfg, data=tiny_data(), out=lambda line: None)

    epochs = {r.model: r.epochs for r in result.trials}
    assert result.complete and epochs == {"bpr": 3, "lightgcn": 1}
