"""MLflow as a server, as cluster.yaml runs it on the head: a SQL backend and an artifact root behind one HTTP
endpoint. A search whose trials run concurrently logs through it, and Ray tasks log into one run at once:
every run, param, metric and artifact arrives."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from raymmrec import tracking
from raymmrec.recsys.trainer import TrainerConfig
from raymmrec.tune.algorithms import SearchConfig
from raymmrec.tune.search import TuneBackbonesConfig, tune_backbones
from recsys_planted import FAST_TRAINER, tiny_data

BIN = Path(sys.executable).parent
EPOCHS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 (SQLite backend, proxied artifact root) in its own process group."""
    tmp_path = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    artifacts = tmp_path / "server-artifacts"
    log = open(tmp_path / "mlflow-server.log", "w")
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(artifacts)],
        env=dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"), start_new_session=True,
        stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300      # its first start creates the schema: minutes on a loaded machine
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow server did not answer: {(tmp_path / 'mlflow-server.log').read_text()[-2000:]}")
            time.sleep(1)
        yield uri, artifacts
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
        mlflow.set_tracking_uri(None)


def test_a_search_logs_every_trial_through_the_server(ray_local, mlflow_server, tmp_path, monkeypatch):
    uri, artifacts = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    store = tracking.TrackingConfig(experiment="served", uri=uri, root=str(tmp_path))
    cfg = TuneBackbonesConfig(
        models=["bpr"], spaces={"bpr": {"reg_weight": {"grid": [0.0, 1e-4, 1e-3, 1e-2]}}},
        search=SearchConfig(scheduler="fifo", cpus_per_trial=0.5, max_concurrent_trials=4, report_every_s=60),
        trainer=TrainerConfig(epochs=EPOCHS, patience=50, **FAST_TRAINER),
        name="served", output=str(tmp_path / "out"), tracking=store)
    result = tune_backbones(cfg, data=tiny_data(), out=lambda line: None)
    assert result.complete and len(result.trials) == 4

    client = mlflow.MlflowClient(tracking_uri=uri)
    parent = client.get_run(result.run_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert sorted(c.data.tags["trial_id"] for c in children) == sorted(r.trial_id for r in result.trials)
    for child in children:
        assert child.info.status == "FINISHED"
        assert {"model", "model_config.reg_weight", "model_config.embedding_size"} <= set(child.data.params)
        history = client.get_metric_history(child.info.run_id, "valid/recall_at_20")
        assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
    assert sorted(float(c.data.params["model_config.reg_weight"]) for c in children) == [0.0, 1e-4, 1e-3, 1e-2]
    # artifacts went over HTTP into the server's artifact root, not to a local path of the client
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")
    assert {"leaderboard.json", "trials.json", "learning_curves.png"} <= {a.path for a in client.list_artifacts(
        result.run_id)}
    assert len(list(artifacts.rglob("leaderboard.json"))) == 1 and list(artifacts.rglob("best.pt"))


def test_ray_tasks_log_into_one_run_at_once(ray_local, mlflow_server):
    uri, _ = mlflow_server
    import ray

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("concurrent"))

    @ray.remote(num_cpus=0.25)
    def log_steps(worker: int, run_id: str, uri: str) -> int:
        for step in range(20):
            tracking.log_metrics_to_run(run_id, uri, {f"worker{worker}/loss": 1.0 / (step + 1), "shared": worker},
                                        step=step)
        return worker

    assert sorted(ray.get([log_steps.remote(w, run.info.run_id, uri) for w in range(4)])) == [0, 1, 2, 3]
    for w in range(4):
        history = client.get_metric_history(run.info.run_id, f"worker{w}/loss")
        assert sorted(m.step for m in history) == list(range(20))
    assert len(client.get_metric_history(run.info.run_id, "shared")) == 80
