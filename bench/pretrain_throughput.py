"""Stage-2 throughput: pairs/s and the fraction of step time workers wait for data, per size × worker count.

    python bench/pretrain_throughput.py                          # tiny and base BEiT3, 1 and 2 workers
    python bench/pretrain_throughput.py sizes=[tiny] workers=[2] tiny_steps=60

Steady state = every logging window after the first (the first holds the pipeline's start-up).
Peak memory = the largest summed RSS of this process's descendants (Ray workers, data tasks) during a run.
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from raymmrec.config import load_config
from raymmrec.errors import exit_on_user_error
from raymmrec.pretrain.stage import PretrainConfig, run_pretrain
from raymmrec.tracking import TrackingConfig, metric_history


@dataclass
class BenchConfig:
    """Which runs to time."""

    sizes: list[str] = field(default_factory=lambda: ["tiny", "base"])
    workers: list[int] = field(default_factory=lambda: [1, 2])
    tiny_steps: int = 40
    tiny_batch: int = 16
    base_steps: int = 4
    base_batch: int = 2
    zero_stage: int = 3
    log_every: int = 4
    root: str = ""          # '' = a temporary dir


class PeakRss:
    """Samples the summed RSS of this process's descendants in a thread."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in me.children(recursive=True):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            time.sleep(0.5)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def bench_one(size: str, workers: int, bc: BenchConfig, root: Path, data: str) -> dict:
    steps = bc.tiny_steps if size == "tiny" else bc.base_steps
    batch = bc.tiny_batch if size == "tiny" else bc.base_batch
    log_every = bc.log_every if size == "tiny" else 1
    cfg = PretrainConfig(max_steps=steps, log_every=log_every, checkpoint_every=steps, num_workers=workers,
                         storage_path=str(root / "ckpt"), run_name=f"bench-{size}-{workers}w", log_weights=False,
                         tracking=TrackingConfig(experiment="bench-pretrain", root=str(root)))
    cfg.beit3.size = size
    cfg.data.source = data
    cfg.data.batch_size = batch
    cfg.deepspeed.zero_stage = bc.zero_stage
    cfg.optim.warmup_steps = 1
    load0 = os.getloadavg()[0]
    with PeakRss() as mem:
        result = run_pretrain(cfg)
    rows = metric_history(result.run_id, ["samples_per_s", "data_wait_frac"],
                          uri=f"sqlite:///{root.resolve() / 'mlflow.db'}")
    steady = rows[1:] if len(rows) > 1 else rows
    mean = {k: sum(r[k] for r in steady) / len(steady) for k in ("samples_per_s", "data_wait_frac")}
    return {"size": size, "workers": workers, "zero": bc.zero_stage, "batch/worker": batch, "steps": steps,
            "pairs/s": round(mean["samples_per_s"], 2), "data-wait %": round(100 * mean["data_wait_frac"], 1),
            "s/step": round(batch * workers / max(mean["samples_per_s"], 1e-9), 3),
            "peak RSS GB": round(mem.peak / 2 ** 30, 2), "wall s": round(result.seconds, 1),
            "load avg": f"{load0:.1f}->{os.getloadavg()[0]:.1f}"}


@exit_on_user_error
def main(argv: list[str]) -> None:
    bc = load_config(BenchConfig, argv)
    from raymmrec.data.synth import SynthConfig, generate_dataset

    with tempfile.TemporaryDirectory(prefix="bench-pretrain-") as tmp:
        root = Path(bc.root or tmp)
        data = root / "synth-tiny"
        if not (data / "items.parquet").is_file():
            generate_dataset(SynthConfig(size="tiny", seed=0), data)
        table = []
        for size in bc.sizes:
            for w in bc.workers:
                try:
                    table.append(bench_one(size, w, bc, root, str(data)))
                except Exception as exc:  # noqa: BLE001 - one failed run (e.g. OOM on a shared box) is a row too
                    table.append({"size": size, "workers": w, "error": str(exc).strip().splitlines()[0][:120]})
    cols = list(dict.fromkeys(c for r in table for c in r))
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in table)) for c in cols]
    print("\n" + "  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in table:
        print("  ".join(str(r.get(c, "")).rjust(w) for c, w in zip(cols, widths)))
    print(f"\nCPU only ({psutil.cpu_count()} cores), shared with other jobs: load average shown per run.")


if __name__ == "__main__":
    main(sys.argv[1:])
