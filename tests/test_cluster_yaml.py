from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


def test_cluster_yaml_passes_ray_validation():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    # The order `ray up` uses: fill in the provider's defaults, then validate against Ray's schema.
    prepared = prepare_config(config)
    validate_config(prepared)
    types = prepared["available_node_types"]
    assert {"head", "cpu_worker", "gpu_worker"} <= set(types)
    assert types["gpu_worker"]["max_workers"] >= 1 and types["cpu_worker"]["min_workers"] == 0
    assert any("pip install" in c and "raymmrec" in c for c in prepared["setup_commands"])


def test_cluster_runs_mlflow_as_a_server_on_the_head_and_points_jobs_at_it():
    prepared = prepare_config(yaml.safe_load((ROOT / "cluster.yaml").read_text()))
    head = " ; ".join(prepared["head_start_ray_commands"])
    server = next(c for c in prepared["head_start_ray_commands"] if "mlflow server" in c)
    assert "--backend-store-uri" in server and "--artifacts-destination" in server
    assert "/mnt/shared" not in server                       # no SQLite over NFS
    # started before Ray, and Ray (hence every submitted job's driver) gets its address
    assert head.index("mlflow server") < head.index("ray start --head")
    assert "MLFLOW_TRACKING_URI=http://127.0.0.1:5000" in head
    assert any("MLFLOW_TRACKING_URI=http://" in c for c in prepared["setup_commands"])
