"""Driver-side Tune callback: one MLflow child run per trial under the search's parent run.

Logging from the driver (not `setup_mlflow` inside trials) sees every ending, including trials ASHA
stops mid-epoch-loop, so each child run gets its stop reason and is closed. Ray's MLflowLoggerCallback
cannot nest runs under a parent or record stop reasons, and passes '@' in metric names, which MLflow refuses.
"""
from __future__ import annotations

from typing import Any, Mapping

from ray.tune import Callback

from raymmrec import tracking
from raymmrec.tune.space import FEATURES_KEY, full_model_config, split_params
from raymmrec.tune.trial import epoch_metrics, final_metrics, stop_reason


class TrialRuns(Callback):
    """Child runs of the run active when the search starts; a resumed search reopens its trials' runs."""

    def __init__(self, model: str, fixed: Mapping[str, Any]) -> None:
        self.model = model
        self.fixed = dict(fixed)
        self._parent: str | None = None
        self._runs: dict[str, tracking.RunHandle] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment; run handles and the parent belong to one session.
        return {**self.__dict__, "_parent": None, "_runs": {}}

    def setup(self, **info: Any) -> None:
        self._parent = tracking.active_run_id()

    def _run(self, trial: Any) -> tracking.RunHandle | None:
        if self._parent is None:
            return None
        run = self._runs.get(trial.trial_id)
        if run is None:
            run, created = tracking.RunHandle.child_of(
                self._parent, f"{self.model}:{trial.trial_id}",
                {"stage": "tune_trial", "model": self.model, "trial_id": trial.trial_id})
            if created:
                _, trainer_overrides = split_params(trial.config)
                run.log_params({"model": self.model,
                                "model_config": full_model_config(self.model, self.fixed, trial.config),
                                "trainer": trainer_overrides,
                                **({FEATURES_KEY: trial.config[FEATURES_KEY]} if FEATURES_KEY in trial.config else {})})
            self._runs[trial.trial_id] = run
        return run

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        run = self._run(trial)
        if run is not None and "epoch" in result:
            run.log_metrics(epoch_metrics(result), step=int(result["epoch"]))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run = self._run(trial)
        if run is not None:
            last = trial.last_result or {}
            run.set_tags({"stop_reason": stop_reason(last)})
            run.log_metrics(final_metrics(last), step=int(last.get("epoch", 0)))
            run.end("FINISHED")
            self._runs.pop(trial.trial_id, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run = self._run(trial)
        if run is not None:
            run.set_tags({"stop_reason": "error"})
            run.end("FAILED")
            self._runs.pop(trial.trial_id, None)
