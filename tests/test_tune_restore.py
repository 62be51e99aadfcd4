import os
import signal
from collections import Counter

import dataclasses

import mlflow
import pytest
from ray.tune import Callback

from raymmrec.errors import ConfigError
from raymmrec.recsys.trainer import TrainerConfig
from raymmrec.tune.algorithms import SearchConfig
from raymmrec.tune.search import TuneBackbonesConfig, tune_backbones
from recsys_planted import FAST_TRAINER, tiny_data


class CtrlCAfterTwoTrials(Callback):
    """Presses Ctrl-C once two trials have finished. Tune pickles callbacks with the experiment and the
    restored search brings this one back, so its state lives on the class, shared by both sessions."""

    armed = True
    finished: list[str] = []
    results: Counter = Counter()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        CtrlCAfterTwoTrials.results[trial.trial_id] += 1

    def on_trial_complete(self, iteration, trials, trial, **info):
        CtrlCAfterTwoTrials.finished.append(trial.trial_id)
        if CtrlCAfterTwoTrials.armed and len(CtrlCAfterTwoTrials.finished) >= 2:
            CtrlCAfterTwoTrials.armed = False
            os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupted_search_resumes_without_losing_or_rerunning_finished_trials(ray_local, mlflow_store, tmp_path):
    cfg = TuneBackbonesConfig(
        models=["bpr"], spaces={"bpr": {"reg_weight": {"grid": [1e-4, 1e-3, 1e-2, 1e-1, 1.0]}}},
        search=SearchConfig(grace_period=1, reduction_factor=2, max_concurrent_trials=1),
        trainer=TrainerConfig(epochs=3, patience=50, **FAST_TRAINER),
        name="restore", output=str(tmp_path / "out"), tracking=mlflow_store)
    data = tiny_data()
    first = tune_backbones(cfg, data=data, callbacks=[CtrlCAfterTwoTrials()], out=lambda line: None)
    assert not first.complete
    done_before = list(CtrlCAfterTwoTrials.finished)
    assert 2 <= len(done_before) < 5
    before = {r.trial_id: r for r in first.trials if r.trial_id in done_before}

    CtrlCAfterTwoTrials.results.clear()
    second = tune_backbones(cfg, data=data, out=lambda line: None)
    assert second.complete and len(second.trials) == 5
    assert all(r.stop_reason in ("finished", "pruned") for r in second.trials)
    assert sorted(r.config["reg_weight"] for r in second.trials) == [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    after = {r.trial_id: r for r in second.trials}
    for trial_id, row in before.items():
        # Finished before the interruption: kept as it was, not trained again.
        assert CtrlCAfterTwoTrials.results[trial_id] == 0
        assert (after[trial_id].score, after[trial_id].epochs, after[trial_id].stop_reason) == \
            (row.score, row.epochs, row.stop_reason)
    assert sum(CtrlCAfterTwoTrials.results.values()) > 0

    # One parent run for both sessions, one child run per trial, each closed with its stop reason.
    assert second.run_id == first.run_id
    client = mlflow.MlflowClient()
    children = client.search_runs([client.get_run(second.run_id).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{second.run_id}'")
    assert sorted(c.data.tags["trial_id"] for c in children) == sorted(after)
    assert all(c.info.status == "FINISHED" and c.data.tags["stop_reason"] == after[c.data.tags["trial_id"]].stop_reason
               for c in children)

    # Resuming the same name with another configuration is refused before anything runs or is logged.
    changed = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, epochs=5))
    with pytest.raises(ConfigError, match="search 'restore' at .* was started with another configuration for 'bpr'"):
        tune_backbones(changed, data=data, out=lambda line: None)
    assert client.get_run(second.run_id).info.status == "FINISHED"


class CtrlCAfterFirstRung(Callback):
    """Presses Ctrl-C once four trials have ended: synchronous halving has decided its first rung."""

    armed = True
    ended = 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        CtrlCAfterFirstRung.ended += 1
        if CtrlCAfterFirstRung.armed and CtrlCAfterFirstRung.ended >= 4:
            CtrlCAfterFirstRung.armed = False
            os.kill(os.getpid(), signal.SIGINT)


def test_sync_halving_resumes_with_the_rungs_it_had_decided(ray_local, mlflow_store, tmp_path):
    # 6 configs, rungs at 2 and 6 of 8 epochs, rf 3. A fresh scheduler rebuilt from the trials' last results
    # must not judge rung 2 again among its 2 survivors (that would cut one of them).
    cfg = TuneBackbonesConfig(
        models=["bpr"], spaces={"bpr": {"trainer.lr": {"grid": [0.05, 0.01, 0.0, 0.0, 0.0, 0.0]}}},
        search=SearchConfig(scheduler="sync_halving", grace_period=2, reduction_factor=3, cpus_per_trial=0.5),
        trainer=TrainerConfig(epochs=8, patience=50, **{**FAST_TRAINER, "lr": 0.01}),
        name="sync-restore", output=str(tmp_path / "out"), tracking=mlflow_store)
    data = tiny_data()
    first = tune_backbones(cfg, data=data, callbacks=[CtrlCAfterFirstRung()], out=lambda line: None)
    assert not first.complete
    second = tune_backbones(cfg, data=data, out=lambda line: None)
    assert second.complete and len(second.trials) == 6
    assert sorted(r.epochs for r in second.trials) == [2, 2, 2, 2, 6, 8]
    assert [r.stop_reason for r in second.trials].count("pruned") == 5
    assert second.best["bpr"].config["trainer.lr"] > 0
