"""Synchronous successive halving: rung by rung over recorded curves, through Tune's scheduler callbacks."""
import random
from dataclasses import dataclass, field

import pytest

from raymmrec.errors import ConfigError
from raymmrec.tune.algorithms import SearchConfig, check_search_config
from raymmrec.tune.sync_halving import SyncHalvingScheduler, rung_milestones

PAUSED, PENDING, RUNNING, TERMINATED = "PAUSED", "PENDING", "RUNNING", "TERMINATED"


@dataclass(eq=False)
class FakeTrial:
    trial_id: str
    curve: list[float]                      # valid metric per epoch; the trial ends after its last one
    status: str = PENDING
    is_saving: bool = False
    last_result: dict = field(default_factory=dict)
    epochs: int = 0


class FakeController:
    """Tune's side of the protocol: `running` trials at a time, each result goes to the scheduler."""

    def __init__(self, sched: SyncHalvingScheduler, trials: list[FakeTrial], running: int, seed: int) -> None:
        self.sched, self.trials, self.slots, self.rng = sched, trials, running, random.Random(seed)

    def get_trials(self):
        return list(self.trials)

    def stop_trial(self, trial):
        assert trial.status in (PAUSED, PENDING)
        trial.status = TERMINATED
        self.sched.on_trial_remove(self, trial)

    def run(self, until=lambda: False, max_steps: int = 10_000) -> None:
        for t in self.trials:
            self.sched.on_trial_add(self, t)
        for _ in range(max_steps):
            if until():
                return
            while sum(t.status == RUNNING for t in self.trials) < self.slots:
                chosen = self.sched.choose_trial_to_run(self)
                if chosen is None:
                    break
                chosen.status = RUNNING
            running = [t for t in self.trials if t.status == RUNNING]
            if not running:
                assert all(t.status == TERMINATED for t in self.trials), "stalled with trials left"
                return
            self.step(self.rng.choice(running))
        raise AssertionError("did not finish")

    def step(self, t: FakeTrial) -> None:
        t.epochs += 1
        done = t.epochs == len(t.curve)
        t.last_result = {"epoch": t.epochs, "m": max(t.curve[:t.epochs]), "should_stop": done}
        decision = self.sched.on_trial_result(self, t, t.last_result)
        if done or decision == "STOP":
            t.status = TERMINATED
            self.sched.on_trial_complete(self, t, t.last_result)
        elif decision == "PAUSE":
            t.status = PAUSED


def scheduler(n: int, max_t: int, grace: int, rf: float) -> SyncHalvingScheduler:
    s = SyncHalvingScheduler(max_t=max_t, grace_period=grace, reduction_factor=rf, num_trials=n)
    s.set_search_properties("m", "max")
    return s


def rising(rate: float, max_t: int) -> list[float]:
    return [rate * e for e in range(1, max_t + 1)]


def test_rungs_are_grace_times_powers_of_rf_below_max_t():
    assert rung_milestones(50, 2, 3) == [2, 6, 18]
    assert rung_milestones(9, 1, 3) == [1, 3]
    assert rung_milestones(10, 1, 1.5) == [1, 2, 3, 4, 6, 9]     # never stuck when int(r·rf) == r


@pytest.mark.parametrize("running,seed", [(1, 0), (2, 1), (3, 2), (9, 3)])
def test_each_rung_keeps_the_best_third_whatever_the_trial_order(running, seed):
    # 9 configs, rungs at 1 and 3 of 9 epochs: 9·1 + 3·2 + 1·6 = 21 epochs, the steepest curve wins.
    rates = [0.1 * (i + 1) for i in range(9)]
    random.Random(seed).shuffle(rates)
    trials = [FakeTrial(f"t{i}", rising(r, 9)) for i, r in enumerate(rates)]
    sched = scheduler(9, 9, 1, 3)
    FakeController(sched, trials, running, seed).run()

    assert sum(t.epochs for t in trials) == 21
    by_rate = sorted(trials, key=lambda t: t.curve[0], reverse=True)
    assert [t.epochs for t in by_rate] == [9, 3, 3, 1, 1, 1, 1, 1, 1]
    assert sched.num_stopped == 8


def test_a_rung_does_not_wait_for_a_trial_that_ended_on_its_own():
    # The second best early-stops at epoch 2, before rung 3: rung 3 is decided with the two left.
    curves = [rising(0.1 * (i + 1), 9) for i in range(9)]
    curves[7] = curves[7][:2]
    trials = [FakeTrial(f"t{i}", c) for i, c in enumerate(curves)]
    FakeController(scheduler(9, 9, 1, 3), trials, 2, 0).run()
    assert [t.epochs for t in trials] == [1, 1, 1, 1, 1, 1, 3, 2, 9]


def test_a_lone_survivor_trains_to_max_t_without_further_rungs():
    trials = [FakeTrial(f"t{i}", rising(0.1 * (i + 1), 20)) for i in range(3)]
    sched = scheduler(3, 20, 1, 3)                      # rungs 1, 3, 9: one is left after the first
    FakeController(sched, trials, 2, 0).run()
    assert [t.epochs for t in trials] == [1, 1, 20]


def test_fewer_configs_than_announced_still_finish():
    # num_trials overstates the grid (or the search algorithm is blocked): the stalled rung is decided anyway.
    trials = [FakeTrial(f"t{i}", rising(0.1 * (i + 1), 9)) for i in range(6)]
    FakeController(scheduler(9, 9, 1, 3), trials, 2, 0).run()
    assert [t.epochs for t in trials] == [1, 1, 1, 1, 3, 9]


@pytest.mark.parametrize("stop_unsaved,moved_on", [(0, 0), (3, 0), (6, 0), (2, 1), (6, 1)])
def test_a_new_scheduler_rebuilds_the_search_from_the_trials_last_results(stop_unsaved, moved_on):
    # Interrupted after rung 1 was decided (and `moved_on` survivors trained past it). A fresh scheduler, as
    # after Tuner.restore, sees the trials as Tune restores them: unfinished ones PENDING with their last
    # result, and the last `stop_unsaved` cut trials unfinished too, as when their stop missed the last
    # experiment snapshot. It must end exactly as the uninterrupted search did.
    rates = [0.1 * (i + 1) for i in range(9)]
    full = [FakeTrial(f"t{i}", rising(r, 9)) for i, r in enumerate(rates)]
    FakeController(scheduler(9, 9, 1, 3), full, 2, 0).run()
    assert [t.epochs for t in full] == [1, 1, 1, 1, 1, 1, 3, 3, 9]

    trials = [FakeTrial(f"t{i}", rising(r, 9)) for i, r in enumerate(rates)]
    FakeController(scheduler(9, 9, 1, 3), trials, 2, 0).run(
        until=lambda: sum(t.status == TERMINATED for t in trials) == 6 and sum(t.epochs > 1 for t in trials) >= moved_on)
    assert sum(t.epochs > 1 for t in trials) == moved_on
    cut = [t for t in trials if t.status == TERMINATED]
    for t in cut[len(cut) - stop_unsaved:]:
        t.status = PENDING
    for t in trials:
        if t.status != TERMINATED:
            t.status = PENDING
    FakeController(scheduler(9, 9, 1, 3), trials, 2, 1).run()
    assert [t.epochs for t in trials] == [t.epochs for t in full]


def test_sync_halving_config_checks():
    check_search_config(SearchConfig(scheduler="sync_halving", grace_period=2), 10)
    with pytest.raises(ConfigError, match="max_concurrent_trials must be 0 with scheduler=sync_halving"):
        check_search_config(SearchConfig(scheduler="sync_halving", max_concurrent_trials=2), 10)
    with pytest.raises(ConfigError, match="grace_period must be within"):
        check_search_config(SearchConfig(scheduler="sync_halving", grace_period=11), 10)
    with pytest.raises(ConfigError, match="search.scheduler must be"):
        check_search_config(SearchConfig(scheduler="hyperband"), 10)
