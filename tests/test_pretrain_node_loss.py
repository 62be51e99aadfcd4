"""Multi-node pre-training that loses a worker node: Ray Train restarts the workers on the node left and resumes
from the last checkpoint in the shared storage_path (a local folder standing in for NFS)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from ray_clusters import worker_cluster
from ray_faults import checkpoint_registered

from raymmrec.pretrain.pairs import PairDataConfig
from raymmrec.pretrain.stage import PretrainConfig, run_pretrain
from raymmrec.runtime import RayConfig

pytestmark = pytest.mark.slow


def actor_nodes(class_name: str) -> list[str]:
    """Ray node id of every live actor whose class name contains `class_name`."""
    import ray

    actors = ray._private.state.actors(actor_state_name="ALIVE").values()
    return [a["Address"]["NodeID"] for a in actors if class_name in a["ActorClassName"]]


class NodeRemover:
    """While the block runs: remove a Ray Train worker's node once the run under `run_dir` has a checkpoint."""

    def __init__(self, cluster, workers, run_dir: Path):
        self.cluster, self.workers, self.run_dir = cluster, {w.node_id: w for w in workers}, run_dir
        # where the workers and the run's drop counter were when the node went
        self.train_nodes: list[str] = []
        self.counter_nodes: list[str] = []
        self.removed: str | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=60)

    def _watch(self) -> None:
        while not self.stop.is_set():
            if self.run_dir.exists() and checkpoint_registered(self.run_dir):
                self.train_nodes = sorted(actor_nodes("RayTrainWorker"))
                self.counter_nodes = actor_nodes("DropCounter")
                self.removed = self.train_nodes[0]
                self.cluster.remove_node(self.workers[self.removed], allow_graceful=False)
                return
            time.sleep(0.05)


@pytest.mark.timeout(600)
def test_pretraining_survives_losing_a_worker_node(synth_dir, tmp_path, mlflow_store, monkeypatch):
    import mlflow

    # Ray Train's controller polls its workers every 2 s: for reported checkpoints (the node goes once one is
    # registered, which must happen well before the last step) and for dead workers (the restart)
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    # Two 1-CPU nodes and a quarter CPU per trainer: half a CPU is left for the data tasks beside each trainer, and
    # beside both on the node left after the loss, but never a whole CPU (what Ray Data's own read tasks ask for).
    with worker_cluster(2) as (cluster, workers):
        head = cluster.head_node.node_id
        cfg = PretrainConfig(max_steps=10, log_every=2, checkpoint_every=2, num_workers=2, cpus_per_worker=0.25,
                             placement_strategy="SPREAD", storage_path=str(tmp_path / "shared"), run_name="lost",
                             tracking=mlflow_store, log_weights=False,
                             ray=RayConfig(address=cluster.address, data_no_progress_timeout_s=120))
        # 161 pairs = 10 steps of 2 workers x 8: one pass covers the run, so no materialised repeat is needed
        cfg.data = PairDataConfig(source=str(synth_dir), batch_size=8, augment=False, mask_seed=0, repeat=1)
        cfg.optim.warmup_steps = 2
        with NodeRemover(cluster, workers, tmp_path / "shared" / "lost") as remover:
            result = run_pretrain(cfg)

    assert remover.removed is not None, "no node was removed (no checkpoint was registered?)"
    assert len(set(remover.train_nodes)) == 2 and head not in remover.train_nodes, remover.train_nodes
    assert remover.counter_nodes == [head]            # the run's drop counts outlive any worker node
    assert result.steps == cfg.max_steps and result.missing_images == result.undecodable_images == 0
    assert remover.removed not in result.worker_nodes, result.worker_nodes      # restarted on the node left
    runs = mlflow.search_runs(experiment_names=[mlflow_store.experiment])
    resumed = runs[runs["tags.run_name"] == "lost"].iloc[0]["metrics.resumed_at_step"]
    assert resumed >= cfg.checkpoint_every and resumed % cfg.checkpoint_every == 0   # from a checkpoint, not step 0
