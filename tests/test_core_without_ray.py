"""The compute core (models, trainer, encoders, objectives, DeepSpeed set-up, stage 3's encoder actor class)
imports with Ray and MLflow unavailable: the GPU check (bench/gpu_check.py) runs it on a machine without them."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ["raymmrec.recsys.registry", "raymmrec.recsys.trainer", "raymmrec.recsys.interaction_data",
        "raymmrec.recsys.approximate_knn", "raymmrec.recsys.planted_data", "raymmrec.encoders",
        "raymmrec.pretrain.objectives", "raymmrec.deepspeed_setup", "raymmrec.pretrain.pairs",
        "raymmrec.features.inference", "raymmrec.encoders.source"]
PROBE = """
import importlib, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('ray', 'mlflow'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
for m in sys.argv[1:]:
    importlib.import_module(m)
from raymmrec.recsys.registry import model_names
assert {'lightgcn', 'freedom', 'mgcn'} <= set(model_names()), model_names()
print('imported', len(sys.argv) - 1)
"""


def test_compute_core_imports_without_ray_or_mlflow():
    done = subprocess.run([sys.executable, "-c", PROBE, *CORE], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"imported {len(CORE)}" in done.stdout
