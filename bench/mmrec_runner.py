"""Run MMRec itself (unmodified `quick_start`) on an MMRec folder, for the parity and speed benches.

MMRec runs in a subprocess with shims for today's numpy / scipy (`dok_matrix._update`, the removed
`np.float` aliases) and stand-ins for its `lmdb` import (used only for raw-image datasets) and PGL's
`sparsesvd` (its global mode only); `Parameter.to` returns a plain tensor as on a GPU (DRAGON's result_embed).
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

MMREC_NAMES = {"bpr": "BPR", "lightgcn": "LightGCN", "vbpr": "VBPR", "freedom": "FREEDOM"}
MMREC_NAMES.update({"lattice": "LATTICE", "bm3": "BM3", "mgcn": "MGCN", "grcn": "GRCN", "mmgcn": "MMGCN"})
MMREC_NAMES.update({"dragon": "DRAGON", "smore": "SMORE", "pgl": "PGL", "damrs": "DAMRS", "mvgae": "MVGAE"})
MMREC_NAMES.update({"layergcn": "LayerGCN", "selfcf": "SELFCFED_LGN", "itemknncbf": "ItemKNNCBF", "mmgcf": "MMGCF",
                    "lgmrec": "LGMRec"})
_RUNNER = '''
import json, os, resource, sys
sys.path.insert(0, os.getcwd())
import numpy as np
import scipy.sparse as sp
if not hasattr(sp.dok_matrix, "_update"):
    sp.dok_matrix._update = lambda self, data: self._dict.update(data)
for alias, real in (("float", float), ("int", int), ("bool", bool)):
    if alias not in np.__dict__:
        setattr(np, alias, real)
sys.modules.setdefault("lmdb", type(sys)("lmdb"))
sys.modules.setdefault("sparsesvd", type(sys)("sparsesvd"))   # PGL imports it for its global mode only
sys.modules["sparsesvd"].sparsesvd = None
import torch
torch.Tensor.cuda = lambda self, *a, **k: self   # LATTICE / MGCN move their graphs with .cuda()


def _parameter_to(self, *args, **kwargs):
    # On a GPU `nn.Parameter(...).to(device)` is a plain tensor, which DRAGON / DualGNN later reassign
    # (result_embed); on the CPU it stays the Parameter and the reassignment fails. Return what a GPU would.
    out = torch.Tensor.to(self, *args, **kwargs)
    return out.detach().requires_grad_(self.requires_grad) if out is self else out


torch.nn.Parameter.to = _parameter_to
if "torch_scatter" not in sys.modules:          # MGCN's sparse Laplacian imports it for one scatter_add
    scatter = type(sys)("torch_scatter")
    scatter.scatter_add = lambda src, index, dim=-1, out=None, dim_size=None: torch.zeros(
        int(index.max()) + 1 if dim_size is None else dim_size, dtype=src.dtype).index_add(0, index, src)
    sys.modules["torch_scatter"] = scatter
import importlib
for name in ("common", "common.abstract_recommender", "common.loss", "common.init"):
    sys.modules["models." + name] = importlib.import_module(name)   # layergcn.py imports them as models.common.*
from utils.quick_start import quick_start
quick_start(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), save_model=False, mg=sys.argv[4] == "mg")
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
'''


@dataclass
class MMRecRun:
    """What one MMRec process printed and logged."""

    output: str
    log: str
    peak_rss_gb: float


def run_mmrec(mmrec_src: str | Path, model: str, folder: Path, config: dict[str, Any], work: Path,
              threads: int = 1, mirror_gradient: bool = False) -> MMRecRun:
    """Train `model` with MMRec on the MMRec folder `folder` (named like its .inter file); `mirror_gradient`
    is MMRec's --mg (its configs/mg.yaml grid, narrowed by `config`)."""
    src = Path(mmrec_src)
    if not (src / "utils" / "quick_start.py").is_file():
        raise FileNotFoundError(f"'{src}' is not MMRec's src folder (no utils/quick_start.py)")
    name = folder.name
    (src / "configs" / "dataset" / f"{name}.yaml").write_text(
        "USER_ID_FIELD: userID\nITEM_ID_FIELD: itemID\nTIME_FIELD: timestamp\nfilter_out_cod_start_users: True\n"
        f"inter_file_name: '{name}.inter'\nvision_feature_file: 'image_feat.npy'\n"
        "text_feature_file: 'text_feat.npy'\nfield_separator: \"\\t\"\n")
    runner = work / "run_mmrec.py"
    runner.write_text(_RUNNER)
    full = {"gpu_id": 0, "use_gpu": False, "data_path": str(folder.parent) + "/", **config}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    before = set((src / "log").glob("*.log")) if (src / "log").is_dir() else set()
    proc = subprocess.run([sys.executable, str(runner), MMREC_NAMES[model], name, json.dumps(full),
                           "mg" if mirror_gradient else "plain"],
                          cwd=src, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    (work / f"mmrec-{model}{'-mg' if mirror_gradient else ''}-{name}.out").write_text(output)
    if proc.returncode != 0:
        raise RuntimeError(f"MMRec {model} failed (exit {proc.returncode}): {output.strip().splitlines()[-3:]}")
    logs = sorted(set((src / "log").glob(f"{MMREC_NAMES[model]}-{name}-*.log")) - before)
    rss = re.search(r"PEAK_RSS_KB (\d+)", output)
    return MMRecRun(output=output, log=logs[-1].read_text() if logs else "",
                    peak_rss_gb=int(rss.group(1)) / 2**20 if rss else float("nan"))


def summary_runs(output: str) -> list[tuple[dict[str, str], dict[str, float]]]:
    """(hyper-parameters as printed, test metrics at the best validation epoch) of each run in MMRec's summary."""
    runs = []
    summary = output.split("All Over", 1)[-1]
    for m in re.finditer(r"Parameters: \[([^\]]*)\]=\(([^)]*)\),\s*best valid: .*?best test: ([^\n]*)", summary, re.S):
        names = [n.strip(" '\"") for n in m.group(1).split(",")]
        values = dict(zip(names, (v.strip() for v in m.group(2).split(","))))   # MMRec may put seed anywhere
        runs.append((values, {k: float(v) for k, v in re.findall(r"([a-z]+@\d+): ([0-9.]+)", m.group(3))}))
    return runs


def test_metrics_per_seed(output: str) -> dict[int, dict[str, float]]:
    """seed → MMRec's test metrics at its best validation epoch, from its 'All Over' summary."""
    return {int(params["seed"]): test for params, test in summary_runs(output)}


def epoch_timings(log: str) -> dict[str, float]:
    """Medians from MMRec's log: training s, validation s, and the whole epoch (train + valid + test) s."""
    train = [float(x) for x in re.findall(r"training \[time: ([0-9.]+)s", log)]
    valid = [float(x) for x in re.findall(r"evaluating \[time: ([0-9.]+)s", log)]
    stamps = [datetime.strptime(s, "%a %d %b %Y %H:%M:%S")
              for s in re.findall(r"^(\w{3} \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2}) INFO epoch \d+ training", log, re.M)]
    walls = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
    return {"train_s": statistics.median(train) if train else float("nan"),
            "valid_s": statistics.median(valid) if valid else float("nan"),
            "epoch_s": statistics.median(walls) if walls else float("nan")}
