"""Accuracy parity with MMRec: the same MMRec folder, hyper-parameters and seeds through both implementations.

    python bench/mmrec_parity.py mmrec_src=/path/to/MMRec/src [models='[lightgcn, freedom]'] [seeds='[999, 1, 2]']

MMRec runs unmodified (its `quick_start`) in a subprocess with two shims for today's numpy / scipy
(`dok_matrix._update`, the removed `np.float` aliases) and a stand-in for its unused `lmdb` import.
Both sides run single-threaded (fair, and robust on shared cores). The table gives each side's mean test
Recall@20 / NDCG@20 at its best validation epoch over the seeds and the relative difference.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raymmrec.config import load_config  # noqa: E402
from raymmrec.errors import ConfigError, exit_on_user_error  # noqa: E402
from raymmrec.recsys.report import format_table  # noqa: E402

MMREC_NAMES = {"bpr": "BPR", "lightgcn": "LightGCN", "vbpr": "VBPR", "freedom": "FREEDOM"}
RUNNER = '''
import json, os, sys
sys.path.insert(0, os.getcwd())
import numpy as np
import scipy.sparse as sp
if not hasattr(sp.dok_matrix, "_update"):
    sp.dok_matrix._update = lambda self, data: self._dict.update(data)
for alias, real in (("float", float), ("int", int), ("bool", bool)):
    if alias not in np.__dict__:
        setattr(np, alias, real)
sys.modules.setdefault("lmdb", type(sys)("lmdb"))
from utils.quick_start import quick_start
quick_start(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), save_model=False)
'''


@dataclass
class ParityConfig:
    """Both implementations on one dataset, one setting per model, several seeds."""

    mmrec_src: str = ""                      # MMRec's src/ folder (holds main.py, configs/, utils/)
    data: str = ""                           # dataset dir; empty: raymmrec.data.synth `small`
    work: str = "/tmp/raymmrec-parity"
    models: list[str] = field(default_factory=lambda: ["bpr", "lightgcn", "vbpr", "freedom"])
    params: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "bpr": {"reg_weight": 1e-4}, "lightgcn": {"n_layers": 2, "reg_weight": 1e-4}, "vbpr": {"reg_weight": 1e-4},
        "freedom": {"dropout": 0.8, "reg_weight": 1e-4}})
    seeds: list[int] = field(default_factory=lambda: [999, 1, 2])
    epochs: int = 60
    batch_size: int = 512
    lr: float = 1e-3
    patience: int = 20


def _mmrec_folder(cfg: ParityConfig) -> Path:
    from raymmrec.data.mmrec import export_mmrec
    from raymmrec.data.schema import DatasetDir

    work = Path(cfg.work)
    folder = work / "data" / "parity"
    if not (folder / "parity.inter").is_file():
        if cfg.data:
            ds = DatasetDir.at(cfg.data)
        else:
            from raymmrec.data.synth import SynthConfig, generate_dataset

            ds = generate_dataset(SynthConfig(size="small", seed=0), work / "synth-small")
        export_mmrec(ds, folder, "parity", feature_set="raw")
    return folder


def _parse_mmrec(log: str) -> dict[int, dict[str, float]]:
    """seed → MMRec's test metrics at its best validation epoch, from the 'All Over' summary."""
    out = {}
    summary = log.split("All Over", 1)[-1]
    for m in re.finditer(r"Parameters: \[[^\]]*\]=\((\d+)[^)]*\),\s*best valid: .*?best test: ([^\n]*)", summary, re.S):
        out[int(m.group(1))] = {k: float(v) for k, v in re.findall(r"([a-z]+@\d+): ([0-9.]+)", m.group(2))}
    return out


def run_mmrec(cfg: ParityConfig, model: str, folder: Path) -> dict[int, dict[str, float]]:
    """Train `model` with MMRec over all seeds; its test metrics per seed."""
    dataset_yaml = Path(cfg.mmrec_src) / "configs" / "dataset" / "parity.yaml"
    dataset_yaml.write_text("USER_ID_FIELD: userID\nITEM_ID_FIELD: itemID\nTIME_FIELD: timestamp\n"
                            "filter_out_cod_start_users: True\ninter_file_name: 'parity.inter'\n"
                            "vision_feature_file: 'image_feat.npy'\ntext_feature_file: 'text_feat.npy'\n"
                            "field_separator: \"\\t\"\n")
    runner = Path(cfg.work) / "run_mmrec.py"
    runner.write_text(RUNNER)
    config = {"gpu_id": 0, "use_gpu": False, "data_path": str(folder.parent) + "/", "seed": cfg.seeds,
              "epochs": cfg.epochs, "train_batch_size": cfg.batch_size, "learning_rate": cfg.lr,
              "stopping_step": cfg.patience, **{k: [v] for k, v in cfg.params.get(model, {}).items()}}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(runner), MMREC_NAMES[model], "parity", json.dumps(config)],
                          cwd=cfg.mmrec_src, env=env, capture_output=True, text=True)
    (Path(cfg.work) / f"mmrec-{model}.log").write_text(proc.stdout + proc.stderr)
    results = _parse_mmrec(proc.stdout + proc.stderr)
    if proc.returncode != 0 or len(results) != len(cfg.seeds):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"MMRec {model} failed (exit {proc.returncode}): {tail}")
    return results


def run_ours(cfg: ParityConfig, model: str, folder: Path) -> dict[int, dict[str, float]]:
    """Train `model` with raymmrec's trainer over all seeds; test metrics at the best validation epoch."""
    from raymmrec.recsys.interaction_data import InteractionData
    from raymmrec.recsys.trainer import TrainerConfig, train_model

    data = InteractionData.from_mmrec_folder(folder)
    out = {}
    for seed in cfg.seeds:
        trainer = TrainerConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience,
                                seed=seed, num_threads=1)
        out[seed] = train_model(model, cfg.params.get(model, {}), trainer, data).test_at_best
    return out


@exit_on_user_error
def main(argv: list[str]) -> None:
    cfg = load_config(ParityConfig, argv)
    if not (Path(cfg.mmrec_src) / "utils" / "quick_start.py").is_file():
        raise ConfigError(f"mmrec_src '{cfg.mmrec_src}' is not MMRec's src folder (no utils/quick_start.py)")
    Path(cfg.work).mkdir(parents=True, exist_ok=True)
    folder = _mmrec_folder(cfg)
    rows = []
    for model in cfg.models:
        theirs, ours = run_mmrec(cfg, model, folder), run_ours(cfg, model, folder)
        row: dict[str, Any] = {"model": model, "seeds": len(cfg.seeds)}
        for metric in ("recall@20", "ndcg@20"):
            a = [theirs[s][metric] for s in cfg.seeds]
            b = [ours[s][metric] for s in cfg.seeds]
            row[f"MMRec {metric}"] = f"{statistics.mean(a):.4f}±{statistics.pstdev(a):.4f}"
            row[f"ours {metric}"] = f"{statistics.mean(b):.4f}±{statistics.pstdev(b):.4f}"
            row[f"Δ {metric}"] = f"{100 * (statistics.mean(b) / statistics.mean(a) - 1):+.1f}%"
        rows.append(row)
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(format_table(rows))
    (Path(cfg.work) / "parity.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
