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
