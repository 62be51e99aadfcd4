"""Synchronous successive halving as a Ray Tune scheduler: a rung waits for every config before the best go on.

ASHA promotes a trial as soon as it beats the configs that reached its rung *so far*; with few trials running
at once, the first arrivals are judged against a half-filled rung and run on (on `baby`, LightGCN's grid spent
38–44% of its epochs under ASHA with grace 2–3). Here every config trains to `grace_period` epochs and pauses;
when all have arrived (or ended on their own), the best ceil(n / rf) by the search metric resume, the rest are
stopped, and so on at grace·rf, grace·rf², … below `max_t`. A lone survivor trains on to `max_t` without rungs.

Paused trials resume from the checkpoint they reported, so the trainable must report one with each result.
The scheduler keeps no state of its own across `Tuner.restore`: it rebuilds it from each trial's last result.
"""
from __future__ import annotations

import math
from typing import Any, Optional

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

FINAL = -1          # level of a trial past the last rung: it trains until it ends


def rung_milestones(max_t: int, grace_period: int, reduction_factor: float) -> list[int]:
    """Epochs at which the trials are compared: grace, grace·rf, … while below max_t."""
    rungs, r = [], grace_period
    while r < max_t:
        rungs.append(r)
        r = max(r + 1, int(r * reduction_factor))
    return rungs


class SyncHalvingScheduler(TrialScheduler):
    """One successive-halving bracket over all `num_trials` configs, each rung decided once all have reached it."""

    # Buffered results could carry a trial past its rung before the scheduler sees the rung's epoch.
    _supports_buffered_results = False

    def __init__(self, *, max_t: int, grace_period: int, reduction_factor: float, num_trials: int,
                 time_attr: str = "epoch", metric: Optional[str] = None, mode: Optional[str] = None) -> None:
        super().__init__()
        self._time_attr, self._metric, self._mode = time_attr, metric, mode
        self._rf, self._num_trials = reduction_factor, num_trials
        self.milestones = rung_milestones(max_t, grace_period, reduction_factor)
        self._trials: dict[str, Trial] = {}
        self._level: dict[str, int] = {}                           # rung index a trial trains towards, or FINAL
        self._scores: list[dict[str, float]] = [{} for _ in self.milestones]
        self._kept: list[int] = [0 for _ in self.milestones]
        self._decided: set[int] = set()
        # Only after a restore: trials known to have gone past a rung, or to have been cut at it.
        self._passed: list[set[str]] = [set() for _ in self.milestones]
        self._cut_at: list[set[str]] = [set() for _ in self.milestones]
        self._ended: set[str] = set()
        self._resume: set[str] = set()                             # promoted while paused: start them again
        self._current: Optional[str] = None                        # the trial whose result is being handled
        self.num_stopped = 0

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode or "max"
        return True

    # --- Tune's callbacks -------------------------------------------------------------------------------------
    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        tid = trial.trial_id
        self._trials[tid] = trial
        self._level.setdefault(tid, 0)
        if trial.last_result and self._time_attr in trial.last_result:
            self._rebuild(trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        tid = trial.trial_id
        self._resume.discard(tid)
        level = self._level.get(tid, 0)
        if tid in self._ended:
            return TrialScheduler.STOP
        # A trial that ends on its own with this result (early stopping, max epochs) is not held at a rung.
        if level == FINAL or result.get("should_stop") or result.get("done"):
            return TrialScheduler.CONTINUE
        if result.get(self._time_attr, 0) < self.milestones[level]:
            return TrialScheduler.CONTINUE
        self._scores[level].setdefault(tid, self._signed(result))
        self._current = tid
        try:
            self._advance(tune_controller)
        finally:
            self._current = None
        if tid in self._ended:
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE if self._level[tid] != level else TrialScheduler.PAUSE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        if trial.trial_id in self._ended:
            return
        self._ended.add(trial.trial_id)
        self._resume.discard(trial.trial_id)
        self._advance(tune_controller)

    def choose_trial_to_run(self, tune_controller: Any) -> Optional[Trial]:
        trials = [t for t in tune_controller.get_trials() if t.trial_id not in self._ended]
        # Nothing running or waiting to start: the search algorithm has no more configs (fewer than
        # num_trials, or it is blocked), so a rung still waiting for them is decided with the ones it has.
        stalled = not any(t.status in (Trial.RUNNING, Trial.PENDING) for t in trials)
        self._advance(tune_controller, stalled=stalled)
        for t in trials:
            if t.status == Trial.PENDING and not self._waiting(t.trial_id):
                return t
        for t in trials:
            if t.status == Trial.PAUSED and t.trial_id in self._resume:
                return t
        return None

    def debug_string(self) -> str:
        rungs = []
        for k, m in enumerate(self.milestones):
            got = len(self._scores[k])
            rungs.append(f"{m}: {got} in" + (f", {self._kept[k]} on" if k in self._decided else ""))
        return (f"Synchronous halving (rf {self._rf:g}), rungs at {self._time_attr} " + "; ".join(rungs)
                + f"; {self.num_stopped} stopped")

    # --- rungs --------------------------------------------------------------------------------------------
    def _signed(self, result: dict) -> float:
        value = float(result[self._metric])
        return value if self._mode != "min" else -value

    def _waiting(self, tid: str) -> bool:
        """Whether a trial sits at an undecided rung (after a restore it is PENDING, not PAUSED)."""
        level = self._level.get(tid, 0)
        return level != FINAL and tid in self._scores[level] and level not in self._decided

    def _live_at(self, k: int) -> list[str]:
        return [t for t, lv in self._level.items() if lv == k and t not in self._ended]

    def _advance(self, tune_controller: Any, stalled: bool = False) -> None:
        """Decide every rung whose live trials have all arrived, lowest first."""
        for k in range(len(self.milestones)):
            if k in self._decided:
                continue
            at_k = self._live_at(k)
            if not at_k:
                if not self._passed[k]:
                    return
                self._decided.add(k)       # restored: decided before, and nobody is left waiting at it
                continue
            everyone = k > 0 or stalled or len(self._trials) >= self._num_trials
            if not everyone or any(t not in self._scores[k] for t in at_k):
                return
            self._decide(tune_controller, k, at_k)

    def _decide(self, tune_controller: Any, k: int, at_k: list[str]) -> None:
        """Keep the best ceil(n / rf) of the n trials at rung k. After a restore, trials already past it were
        kept and trials that ended exactly at it were cut: since every kept trial outranked every cut one,
        the best of those still waiting fill the remaining places, as the first decision did."""
        ranked = sorted(at_k, key=lambda t: self._scores[k][t], reverse=True)
        n = len(ranked) + len(self._passed[k]) + len(self._cut_at[k])
        keep = math.ceil(n / self._rf)
        places = max(0, keep - len(self._passed[k]))
        self._decided.add(k)
        self._kept[k] = keep
        for tid in ranked[:places]:
            self._promote(tid, k, lone=keep == 1)
        for tid in ranked[places:]:
            self._cut(tune_controller, tid)

    def _promote(self, tid: str, k: int, lone: bool) -> None:
        self._level[tid] = FINAL if lone or k + 1 == len(self.milestones) else k + 1
        trial = self._trials[tid]
        if tid != self._current and (trial.status in (Trial.PAUSED, Trial.PENDING) or trial.is_saving):
            self._resume.add(tid)

    def _cut(self, tune_controller: Any, tid: str) -> None:
        self._ended.add(tid)
        self.num_stopped += 1
        trial = self._trials[tid]
        # The trial being handled gets STOP from on_trial_result; a paused one is stopped here.
        if tid != self._current and (trial.status in (Trial.PAUSED, Trial.PENDING) or trial.is_saving):
            tune_controller.stop_trial(trial)

    def _rebuild(self, trial: Trial) -> None:
        """Where a restored trial stands, from its last result (Tune keeps no scheduler state)."""
        tid, result = trial.trial_id, trial.last_result
        epoch = result[self._time_attr]
        passed = [k for k, m in enumerate(self.milestones) if m < epoch]
        for k in passed:
            self._passed[k].add(tid)
        own_end = result.get("should_stop") or result.get("done")
        if trial.status in (Trial.TERMINATED, Trial.ERROR):
            self._ended.add(tid)
            if epoch in self.milestones and not own_end:
                self._cut_at[self.milestones.index(epoch)].add(tid)
            return
        level = len(passed)
        self._level[tid] = FINAL if level == len(self.milestones) else level
        if level < len(self.milestones) and self.milestones[level] == epoch and self._metric in result:
            self._scores[level][tid] = self._signed(result)
