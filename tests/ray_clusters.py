"""Multi-node Ray on one machine for the scale-out and node-loss tests: Ray's fake autoscaling provider behind a
private `ray start --head`, a fixed `ray.cluster_utils.Cluster`, and teardown that ends exactly the processes a test
started (never `ray stop`, which would end every Ray on a shared machine)."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import psutil

BIN = Path(sys.executable).parent
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_auth_token() -> None:
    """Create the local Ray auth token when none exists (a fresh machine has none).

    `ray.init()` of a local cluster writes ~/.ray/auth_token on first use, but `ray start --head` refuses to run
    without one, so a suite whose first Ray is a `ray start` head failed on a new machine.
    """
    from ray._private.authentication.authentication_token_setup import (_get_default_token_path,
                                                                          generate_and_save_token)

    token_path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", _get_default_token_path()))
    if not os.environ.get("RAY_AUTH_TOKEN") and not token_path.exists():
        generate_and_save_token()


def end_process_tree(pid: int, grace_s: float = 20.0) -> None:
    """SIGTERM `pid` and every descendant it has now, then SIGKILL whatever is left after `grace_s`."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [root, *root.children(recursive=True)]
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=10)


def alive_worker_nodes() -> list[dict]:
    """Alive nodes of the connected cluster other than the head."""
    import ray

    head = ray.get_runtime_context().get_node_id()   # the driver runs on the head
    return [n for n in ray.nodes() if n["Alive"] and n["NodeID"] != head]


@contextlib.contextmanager
def worker_cluster(n: int, cpus: int = 1) -> Iterator[tuple]:
    """Yields (a connected ray.cluster_utils.Cluster: no CPUs on its head, private ports; its `n` worker nodes)."""
    import ray

    # a session's local Ray (conftest's ray_local) makes way for the cluster and comes back after it
    was_local = ray.is_initialized()
    ray.shutdown()
    for attempt in range(2):
        before = {p.pid for p in psutil.Process().children()}
        try:
            cluster, workers = _start_cluster(n, cpus)
            break
        except Exception as e:
            # Ray gives a new raylet a fixed 30 s to register, which a loaded machine can exceed: one more try,
            # after ending what the failed one left running
            if "timed out during startup" not in str(e) or attempt:
                raise
            for proc in psutil.Process().children():
                if proc.pid not in before:
                    end_process_tree(proc.pid)
    try:
        ray.init(address=cluster.address)
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()
        if was_local:
            start_local_ray()


def _start_cluster(n: int, cpus: int) -> tuple:
    """(cluster, worker nodes) of `n` nodes of `cpus` CPUs; nothing left running when a node fails to start."""
    from ray.cluster_utils import Cluster

    # a removed node is declared dead after 5 missed health checks: 1 s apart instead of 3 s, still only once it
    # has answered none for about a minute (each check waits 10 s), so a slow raylet on a loaded machine stays alive
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=0, include_dashboard=False, object_store_memory=200 * MIB,
        dashboard_agent_listen_port=free_port(), metrics_export_port=free_port(),
        _system_config={"health_check_period_ms": 1000}))
    try:
        workers = [cluster.add_node(num_cpus=cpus, object_store_memory=150 * MIB,
                                    dashboard_agent_listen_port=free_port(), metrics_export_port=free_port())
                   for _ in range(n)]
        cluster.wait_for_nodes()
    except BaseException:
        cluster.shutdown()
        raise
    return cluster, workers


def start_local_ray() -> None:
    """The local 2-CPU Ray of the test session (conftest's `ray_local`)."""
    from raymmrec.runtime import RayConfig, init_ray

    init_ray(RayConfig(num_cpus=2, object_store_mb=1024, data_no_progress_timeout_s=120))


@contextlib.contextmanager
def fake_autoscaling_head(worker_types: dict, max_workers: int, head_object_store_mb: int = 200,
                          idle_timeout_minutes: float = 0.1) -> Iterator[dict]:
    """A head with no CPUs whose autoscaler launches `worker_types` as local fake nodes (Ray's fake_multinode
    provider, as AutoscalingCluster sets it up, but on private ports and torn down by process tree).

    Yields {"address": GCS address, "dashboard": job API URL, "env": environment for `ray` commands}.
    """
    ensure_auth_token()
    port, dash, agent, agent_grpc, metrics = (free_port() for _ in range(5))
    temp = tempfile.mkdtemp(prefix="ras", dir="/tmp")      # short: Ray's socket paths have a length limit
    config = {
        "cluster_name": f"fake-{port}", "max_workers": max_workers, "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": f"127.0.0.1:{port}"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0}, **worker_types},
        "head_node_type": "ray.head.default", "auth": {}, "docker": {}, "file_mounts": {},
        "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [],
        "rsync_filter": [], "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": []}
    config_file = Path(temp) / "autoscaling.json"
    config_file.write_text(json.dumps(config))
    # a loaded machine starts a raylet slowly: give it longer than the default minute
    env = dict(os.environ, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1", RAY_raylet_start_wait_time_s="300",
               PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         f"--autoscaling-config={config_file}", "--num-cpus=0", f"--object-store-memory={head_object_store_mb * MIB}",
         f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", f"--dashboard-agent-listen-port={agent}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}", f"--temp-dir={temp}",
         "--disable-usage-stats"],
        env=env, start_new_session=True, stdout=open(Path(temp) / "head.log", "w"), stderr=subprocess.STDOUT)
    try:
        dashboard = f"http://127.0.0.1:{dash}"
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{dashboard}/api/version", timeout=3):
                    break
            except urllib.error.HTTPError:
                break            # it answers (with RAY_AUTH_MODE=token, 401 to a caller without the token)
            except OSError:
                pass
            if head.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the fake autoscaling head did not start: "
                                   f"{(Path(temp) / 'head.log').read_text()[-2000:]}")
            time.sleep(2)
        yield {"address": f"127.0.0.1:{port}", "dashboard": dashboard, "env": env, "temp": temp}
    finally:
        end_process_tree(head.pid)
