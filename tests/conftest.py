"""Shared fixtures: the repo root first on sys.path, one local Ray per session, a private MLflow store."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# kNN neighbour lists are cached per feature file; keep the suite's out of ~/.cache
os.environ.setdefault("RAYMMREC_CACHE_DIR", tempfile.mkdtemp(prefix="raymmrec-cache-"))
os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")


@pytest.fixture(scope="session")
def ray_local():
    """A local 2-CPU Ray instance shared by every test that needs one."""
    import ray

    from raymmrec.runtime import RayConfig, init_ray

    init_ray(RayConfig(num_cpus=2, object_store_mb=1024, data_no_progress_timeout_s=120))
    yield ray
    ray.shutdown()


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch):
    """A fresh SQLite MLflow store for one test; yields its TrackingConfig."""
    import mlflow

    from raymmrec.tracking import TrackingConfig

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = TrackingConfig(experiment="test", uri=uri, root=str(tmp_path))
    yield cfg
    while mlflow.active_run() is not None:
        mlflow.end_run()
