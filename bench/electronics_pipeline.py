"""Electronics end to end on this machine: generated `electronics` (63k items with images) → stage-3 features from a
small encoder on 2 actors → a synchronous-halving search of LightGCN and FREEDOM for a few epochs → top-K lists for
every user. Wall time and peak memory per stage, as one table.

    python bench/electronics_pipeline.py                                 # the whole run (83 min on 2 loaded cores)
    python bench/electronics_pipeline.py size=baby workdir=/tmp/e2e-baby # the same path at a size that takes minutes
    python bench/electronics_pipeline.py pipeline.tune.trainer.epochs=4  # any pipeline key under `pipeline.`

Measured here (2 cores, other benches and the test suite alongside): prepare 92 s, features 407 s, tune 4,311 s
(a LightGCN epoch 15–31 min and a FREEDOM epoch 25 min per one-thread trial, evaluation included), recommend 159 s
for 197,627 users; peak PSS 7.1 GB. The tune stage dominates. Memory is the proportional set size (PSS) summed over
this process and every process under it (Ray's GCS, raylet, workers and the object store's mapped pages), sampled
every `sample_s`: shared pages are counted once, so the sum is what the machine held. Stages whose output exists are reused by the pipeline (delete `workdir` to time them again).
"""
from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raymmrec.config import from_dict, load_config, merge_dicts, to_dict  # noqa: E402
from raymmrec.errors import exit_on_user_error  # noqa: E402
from raymmrec.pipeline import PipelineConfig, run_pipeline  # noqa: E402


def electronics_pipeline(size: str) -> dict[str, Any]:
    """The pipeline sections of this bench (no pre-training: a random-init tiny CLIP stands in for the encoder)."""
    return {
        "stages": ["prepare", "features", "tune", "recommend"],
        "prepare": {"source": "synth", "synth": {"size": size, "seed": 0}},
        "features": {"method": "clip", "encoder": "random", "inference": {"concurrency": 2, "cpus_per_actor": 0.5,
                                                                         "batch_size": 128},
                     "quality": {"enabled": True, "ks": [20]}},
        "tune": {"models": ["lightgcn", "freedom"],
                 # the stage-3 set only: the pipeline's default also searches the dataset's raw features
                 "feature_sets": [],
                 # two configs each; FREEDOM's item kNN graph through FAISS (exact is ~12 min per modality here).
                 # LightGCN is halved after its first epoch; FREEDOM's two trials stop at one epoch (25 min each on
                 # one thread here), so the whole bench fits in under an hour and a half on 2 cores.
                 "spaces": {"lightgcn": {"reg_weight": {"grid": [1e-4, 1e-3]}},
                            "freedom": {"reg_weight": {"grid": [0.0, 1e-4]}}},
                 "params": {"lightgcn": {"n_layers": 2}, "freedom": {"knn_method": "faiss", "trainer.epochs": 1}},
                 "trainer": {"epochs": 2, "batch_size": 2048, "lr": 1e-3, "patience": 10, "eval_batch_size": 4096},
                 "search": {"algorithm": "grid", "num_samples": 1, "scheduler": "sync_halving", "grace_period": 1,
                            "reduction_factor": 2, "cpus_per_trial": 1.0}},
        "recommend": {"k": 20, "actors": 2, "batch_users": 4096, "cold_k": 10},
    }


@dataclass
class ElectronicsBenchConfig:
    """Size, where the pipeline writes, how often memory is sampled, and pipeline overrides."""

    size: str = "electronics"
    workdir: str = "/tmp/raymmrec-electronics"
    sample_s: float = 5.0
    pipeline: dict[str, Any] = field(default_factory=dict)   # nested pipeline keys over electronics_pipeline()
    out: str = ""                                            # also write the table's rows as JSON here


class TreeMemory:
    """Samples the summed PSS of this process tree in a thread; the peak between two marks."""

    def __init__(self, every_s: float):
        import psutil

        self.root, self.every_s = psutil.Process(), every_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pss_gb(self) -> float:
        import psutil

        total = 0
        for p in [self.root, *self.root.children(recursive=True)]:
            try:
                total += p.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        return total / 2**30

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self._pss_gb()))
            self._stop.wait(self.every_s)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> float:
        """Peak summed PSS in GB over [start, end] (the nearest sample when none falls inside)."""
        inside = [gb for t, gb in self.samples if start <= t <= end]
        if inside:
            return max(inside)
        return min(self.samples, key=lambda s: abs(s[0] - end))[1] if self.samples else float("nan")


@exit_on_user_error
def main(argv: list[str]) -> None:
    cfg = load_config(ElectronicsBenchConfig, argv)
    sections = merge_dicts(electronics_pipeline(cfg.size), {**cfg.pipeline, "workdir": cfg.workdir})
    pipeline = from_dict(PipelineConfig, merge_dicts(to_dict(PipelineConfig()), sections))
    marks: dict[str, list[float]] = {}
    memory = TreeMemory(cfg.sample_s)

    def out(line: str) -> None:
        print(line, flush=True)
        if line.startswith("[pipeline] ") and ": " in line:
            stage = line[len("[pipeline] "):].split(":", 1)[0]
            marks.setdefault(stage, []).append(time.time())
            if ": done in " in line:   # each stage's row as it ends: a run stopped later keeps it
                print(f"[bench] {stage}: peak PSS {memory.peak(marks[stage][0], marks[stage][-1]):.2f} GB", flush=True)

    started = time.time()
    with memory:
        records = run_pipeline(pipeline, out=out)
    rows = []
    for stage, rec in records.items():
        t = marks.get(stage, [started, time.time()])
        rows.append({"stage": stage, "status": rec.status, "seconds": round(rec.seconds, 1),
                     "peak PSS GB": round(memory.peak(t[0], t[-1]), 2), "folder": str(rec.folder)})
    rows.append({"stage": "total", "status": "", "seconds": round(time.time() - started, 1),
                 "peak PSS GB": round(max((gb for _, gb in memory.samples), default=float("nan")), 2), "folder": ""})
    print()
    print(f"{'stage':<10} {'status':<8} {'seconds':>9} {'peak PSS GB':>12}  folder")
    for r in rows:
        print(f"{r['stage']:<10} {r['status']:<8} {r['seconds']:>9.1f} {r['peak PSS GB']:>12.2f}  {r['folder']}")
    if "prepare" in records:
        print(json.dumps({k: v for k, v in records["prepare"].outputs["stats"].items()
                          if k in ("users", "items", "interactions")}))
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
