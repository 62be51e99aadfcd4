"""Shared fixtures (the repo root first on sys.path, one local Ray per session, the tiny generated dataset, a
private MLflow store) and the `slow` mark of the tests that start Ray clusters, job processes or DeepSpeed engines."""
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


# `make test-fast` runs `-m "not slow"`; `make test` (CI) runs everything. A test is slow when it starts a Ray
# cluster (these fixtures, directly or through another fixture) ...
SLOW_FIXTURES = ("ray_local", "ray_head")
# ... or, without one, starts job subprocesses (each imports torch, Ray and DeepSpeed afresh), runs DeepSpeed
# engines, pre-training or end-to-end loops: the tests of the rest that took 50 s or more in a `-m "not slow"` run
# on 2 cores under load ~40 (all others took under 40 s there, most under 5 s).
SLOW_TESTS = {
    "test_recsys_crash.py::test_sigkilled_job_resumes_to_the_history_of_an_uninterrupted_run": "3 job processes",
    "test_recsys_job.py::test_job_cli_on_an_mmrec_folder_and_user_errors": "2 job processes",
    "test_pretrain_consolidate.py::test_zero3_checkpoint_consolidates_to_an_encoder_with_the_same_outputs":
        "DeepSpeed ZeRO-3 engines",
    "test_pretrain_objectives.py::test_mlm_and_mim_losses_fall_for_beit3": "pre-training loop, 323 s",
    "test_pretrain_objectives.py::test_mim_with_frozen_teacher_targets": "pre-training loop, 196 s",
    "test_pretrain_objectives.py::test_itc_loss_falls_for_clip": "pre-training loop, 84 s",
    "test_recommend.py::test_recommend_bad_input": "its module's trained model, 84 s",
    "test_end_to_end.py::test_job_with_paradigm_ete_and_unsupported_model": "two end-to-end jobs, 52 s",
}


def pytest_collection_modifyitems(config, items):
    """Mark `slow` every test that uses a Ray fixture or is listed in SLOW_TESTS (a stale entry is an error)."""
    modules = {}
    for item in items:
        module = item.path.name
        modules[module] = item.module
        if f"{module}::{item.originalname}" in SLOW_TESTS or any(f in item.fixturenames for f in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)
    for name in SLOW_TESTS:
        module, test = name.split("::")
        if module in modules and not hasattr(modules[module], test):
            raise pytest.UsageError(f"tests/conftest.py SLOW_TESTS names '{name}', which does not exist")


@pytest.fixture(scope="session")
def ray_local():
    """A local 2-CPU Ray instance shared by every test that needs one."""
    import ray
    from ray_clusters import start_local_ray

    start_local_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """The generated tiny dataset (seed 0), shared read-only by the tests that pre-train or read pairs."""
    from raymmrec.data.synth import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(SynthConfig(size="tiny", seed=0), root)
    return root


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
