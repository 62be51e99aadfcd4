"""Scale-out on one machine: a search on an autoscaling cluster that starts with no workers (Ray's fake
multi-node provider, node types shaped like cluster.yaml's), a pipeline job submitted to that head, and a
search that loses a worker node mid-run and finishes every trial from its checkpoints on another node."""
from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from ray.tune import Callback

from raymmrec.recsys.trainer import TrainerConfig
from raymmrec.tracking import TrackingConfig
from raymmrec.runtime import RayConfig
from raymmrec.tune.algorithms import SearchConfig
from raymmrec.tune.search import TuneBackbonesConfig, tune_backbones
from ray_clusters import (BIN, MIB, alive_worker_nodes, fake_autoscaling_head, start_local_ray,
                          worker_cluster)
from recsys_planted import FAST_TRAINER, tiny_data

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

# cluster.yaml's worker types, one CPU each; a custom resource stands in for the GPU worker's accelerators
WORKER_TYPES = {
    "cpu_worker": {"resources": {"CPU": 1, "data": 1, "object_store_memory": 150 * MIB}, "node_config": {},
                   "min_workers": 0, "max_workers": 1},
    "gpu_worker": {"resources": {"CPU": 1, "accel": 1, "object_store_memory": 150 * MIB}, "node_config": {},
                   "min_workers": 0, "max_workers": 2},
}


@pytest.fixture(scope="module")
def autoscaling_head():
    """The fake autoscaling cluster; a session's local Ray is shut down for it and restarted after."""
    import ray

    was_local = ray.is_initialized()
    ray.shutdown()
    try:
        with fake_autoscaling_head(WORKER_TYPES, max_workers=2) as head:
            yield head
    finally:
        ray.shutdown()
        if was_local:
            start_local_ray()


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(2)


class HoldFirstTrialForNodes(Callback):
    """Blocks Tune's loop at the first trial start until `n` worker nodes are alive and each has its CPU reserved by
    a trial's placement group: that trial waits at its first report (a function trainable's report waits for the
    driver) while the pending trials' placement groups, already requested, drive the autoscaler and are placed."""

    def __init__(self, n: int):
        self.n = n
        self.held = False
        self.released_with: set[str] = set()   # the worker nodes holding a placement group when it let go

    def on_trial_start(self, iteration, trials, trial, **info):
        if not self.held:
            self.held = True
            _wait_for(lambda: len(_worker_nodes_holding_a_placement_group()) >= self.n, 300,
                      f"{self.n} worker nodes with a trial placed on each")
            self.released_with = _worker_nodes_holding_a_placement_group()


def _worker_nodes_holding_a_placement_group() -> set[str]:
    """Alive worker nodes on which a placement group (a trial's reservation) has been created."""
    from ray.util import placement_group_table

    # Asked of the placement groups themselves: a node's free CPU is not, since a node can be alive before its
    # resources are reported, and a resource with nothing free is left out of the report (read as 0 free either
    # way), so a second node that held nothing passed for a busy one and one node ran all six trials (CI, stop 22).
    workers = {n["NodeID"] for n in alive_worker_nodes()}
    return {node for pg in placement_group_table().values() if pg["state"] == "CREATED"
            for node in pg["bundles_to_node_id"].values() if node in workers}


def _search(tmp_path, name: str, grid: list[float], epochs: int, address: str, **search) -> TuneBackbonesConfig:
    return TuneBackbonesConfig(
        models=["bpr"], spaces={"bpr": {"reg_weight": {"grid": grid}}},
        search=SearchConfig(**{"scheduler": "fifo", "cpus_per_trial": 0.5, "report_every_s": 60, **search}),
        trainer=TrainerConfig(epochs=epochs, patience=50, **FAST_TRAINER), name=name,
        output=str(tmp_path / "out"), storage=str(tmp_path / "shared"), ray=RayConfig(address=address),
        tracking=TrackingConfig(enabled=False))


@pytest.mark.timeout(900)
def test_search_scales_out_from_no_workers_and_idle_nodes_go(autoscaling_head, tmp_path):
    import ray

    ray.init(address=autoscaling_head["address"])
    try:
        assert alive_worker_nodes() == []
        head = ray.get_runtime_context().get_node_id()
        # one trial per 1-CPU node; the first trial is held at its start until the autoscaler's second node holds
        # a pending trial's placement group (else, on a quiet machine, the first node can run all six short trials
        # first). No actor reuse: with it, the first node's actor, free again after a sub-second trial, took the
        # trial whose process was still starting on the second node (2 of 7 runs here put all six on one node).
        cfg = _search(tmp_path, "autoscaled", [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1], 4, autoscaling_head["address"],
                      cpus_per_trial=1.0, reuse_actors=False)
        hold = HoldFirstTrialForNodes(2)
        result = tune_backbones(cfg, data=tiny_data(), callbacks=[hold], out=lambda line: None)

        assert result.complete and len(result.trials) == 6 and all(r.epochs == 4 for r in result.trials)
        nodes = {n for r in result.trials for n in r.nodes}
        assert head not in nodes and len(nodes) >= 2, (nodes, hold.released_with)
        board = json.loads((tmp_path / "out" / "autoscaled" / "leaderboard.json").read_text())
        assert board[0]["model"] == "bpr"
        trials = json.loads((tmp_path / "out" / "autoscaled" / "trials.json").read_text())
        assert all(t["nodes"] for t in trials)
        _wait_for(lambda: alive_worker_nodes() == [], 180, "the idle workers to be removed")
    finally:
        ray.shutdown()


@pytest.mark.timeout(900)
def test_pipeline_job_submitted_to_the_autoscaling_head(autoscaling_head, tmp_path):
    import pyarrow.parquet as pq

    work = tmp_path / "pipeline"
    # No --working-dir: fake nodes share one disk, and a fake node removed when idle deletes the session's
    # unpacked working dir under the running driver (test_ray_job_submit.py covers --working-dir itself).
    runtime_env = json.dumps({"env_vars": {"RAYMMREC_CACHE_DIR": "", "PYTHONPATH": str(ROOT)}})
    # the pipeline's stages that need no encoder: pre-training and extraction have their own multi-node tests
    cmd = [str(BIN / "ray"), "job", "submit", "--address", autoscaling_head["dashboard"],
           "--runtime-env-json", runtime_env, "--",
           "python", str(ROOT / "jobs" / "pipeline.py"), f"workdir={work}", "stages=[prepare, tune, recommend]",
           "prepare.synth.size=tiny", "tune.models=[bpr]", "tune.feature_sets=[]", "tune.trainer.epochs=2",
           "tune.trainer.patience=1", "tune.search.algorithm=grid", "tune.search.num_samples=1",
           "tune.search.scheduler=fifo", "tune.search.report_every_s=30",
           "tune.spaces={bpr: {reg_weight: {grid: [0.001, 0.0001]}}}",
           "recommend.actors=1", "tracking.enabled=false"]
    for _ in range(15):   # the head's job agent comes up a little after its dashboard answers
        done = subprocess.run(cmd, env=autoscaling_head["env"], capture_output=True, text=True, timeout=800)
        if "No available agent" not in done.stdout + done.stderr:
            break
        time.sleep(4)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout.lower()
    (trials_file,) = work.glob("tune-*/search/trials.json")
    trials = json.loads(trials_file.read_text())
    assert len(trials) == 2 and all(t["epochs"] == 2 and t["nodes"] for t in trials)
    (dataset,) = work.glob("prepare-*/dataset")
    n_users = len(pq.read_table(dataset / "users.parquet"))
    (recs,) = work.glob("recommend-*/recommendations")
    users = pq.read_table(recs, columns=["user"]).column("user").to_pylist()
    assert sorted(users) == list(range(n_users))


@pytest.fixture()
def two_worker_cluster():
    """A head with no CPUs and two 1-CPU workers."""
    with worker_cluster(2) as (cluster, workers):
        yield cluster, workers


class NodeKiller(Callback):
    """A Tune callback that removes the worker node of the first trial to report, once every trial running
    there that has reported holds a checkpoint, and records where each trial reported each epoch."""

    def __init__(self, cluster, workers):
        self.cluster, self.workers = cluster, {w.node_id: w for w in workers}
        self.reports: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self.removed: str | None = None

    def __getstate__(self):
        # Tune pickles its callbacks with the experiment; the cluster handle stays in this process
        return {"reports": dict(self.reports), "removed": self.removed}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.reports[trial.trial_id].append((int(result["epoch"]), result["node_id"]))

    def on_step_begin(self, iteration, trials, **info):
        # between controller steps, so every result seen so far has had its checkpoint registered
        if self.removed is not None or not self.reports:
            return
        first = next(iter(self.reports.values()))[0][1]
        running_there = [t for t in trials if t.status == "RUNNING" and self.reports.get(t.trial_id)
                         and self.reports[t.trial_id][-1][1] == first]
        if running_there and all(t.checkpoint is not None for t in running_there):
            self.removed = first
            # off the controller thread: removing a node blocks until its processes are gone
            threading.Thread(target=self.cluster.remove_node, args=(self.workers[first],), daemon=True).start()


@pytest.mark.timeout(900)
def test_a_search_survives_losing_a_worker_node(two_worker_cluster, tmp_path):
    cluster, workers = two_worker_cluster
    killer = NodeKiller(cluster, workers)
    epochs = 5
    cfg = _search(tmp_path, "node_loss", [0.0, 1e-4, 1e-3, 1e-2], epochs, cluster.address)
    result = tune_backbones(cfg, data=tiny_data(), callbacks=[killer], out=lambda line: None)

    assert killer.removed is not None
    assert result.complete and len(result.trials) == 4
    assert all(r.error is None and r.epochs == epochs and r.stop_reason == "finished" for r in result.trials)
    moved = 0
    for trial_id, reports in killer.reports.items():
        epochs_seen = [e for e, _ in reports]
        assert epochs_seen.count(1) == 1, (trial_id, reports)          # none restarted from scratch
        assert sorted(set(epochs_seen)) == list(range(1, epochs + 1))   # and none lost an epoch
        nodes = list(dict.fromkeys(n for _, n in reports))
        if nodes[0] == killer.removed and len(nodes) > 1:
            moved += 1
            assert nodes[-1] != killer.removed                           # it finished on the other node
    assert moved >= 1

