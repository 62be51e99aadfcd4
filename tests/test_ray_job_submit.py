"""A job submitted with `ray job submit --working-dir .` to a local Ray head runs unchanged and writes its result."""
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import mlflow
import pytest
from ray_clusters import BIN, ensure_auth_token, free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def ray_head():
    """A private `ray start --head --block` in its own process group, torn down by signalling that group."""
    ensure_auth_token()
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")   # short: Ray's socket paths have a length limit
    # Every port of its own: another local Ray (the suite's `ray_local`) already holds the default agent ports.
    port, dash, agent, agent_grpc, metrics = (free_port() for _ in range(5))
    env = dict(os.environ, RAY_AUTH_MODE="token", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dash}",
         "--dashboard-host=127.0.0.1", f"--dashboard-agent-listen-port={agent}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}", "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 180
    while time.time() < deadline:
        probe = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address], env=env,
                               capture_output=True, text=True)
        if probe.returncode == 0:
            break
        time.sleep(3)
    else:
        os.killpg(head.pid, signal.SIGKILL)
        pytest.fail("the local Ray head did not start within 180 s")
    yield address, env
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.timeout(1500)
def test_tune_job_submitted_to_local_head(ray_head, tmp_path):
    address, env = ray_head
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = dict(env, MLFLOW_TRACKING_URI=store)
    runtime_env = '{"excludes": [".venv", "runs", "data", ".git"], "env_vars": {"MLFLOW_TRACKING_URI": "%s"}}' % store
    cmd = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(ROOT),
           "--runtime-env-json", runtime_env, "--",
           "python", "jobs/tune_backbones.py", "models=[bpr]", "trainer.epochs=2", "trainer.patience=1",
           "spaces={bpr: {reg_weight: {grid: [0.001, 0.0001]}}}", "search.grace_period=1",
           f"output={tmp_path / 'tune'}", "name=submitted", f"tracking.root={tmp_path}",
           f"synth_size=tiny", "search.report_every_s=5"]
    for _ in range(15):   # the head's job agent comes up a little after its dashboard answers
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if "No available agent" not in done.stdout + done.stderr:
            break
        time.sleep(4)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout.lower()
    assert (tmp_path / "tune" / "submitted" / "leaderboard.json").is_file()
    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["raymmrec"], output_format="list")
    assert any(r.data.tags.get("stage") == "tune" for r in runs)
    assert sum(1 for r in runs if "mlflow.parentRunId" in r.data.tags) >= 2   # one child run per trial
