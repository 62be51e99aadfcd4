"""Wall and CPU seconds per training batch and per full evaluation, and peak memory, of each backbone.

    python bench/step_speed.py sizes='{baby: [lightgcn, mmgcn]}' batches=8
    python bench/step_speed.py sizes='{electronics: [grcn]}' batches=825     # a whole Electronics epoch

The machine this runs on is shared, so next to wall seconds it reports process CPU seconds (user +
system over all threads), which move much less with other people's load, and the load average.
Seconds per epoch = median seconds per batch × batches per epoch (MMRec's batch 2048). The data is
bench/train_speed.py's planted MMRec folder (4096-d image, 384-d text); each (size, model) runs in its
own process so peak RSS is its own; hyper-parameters are train_speed's (MMRec's first grid values).
"""
from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from raymmrec.errors import exit_on_user_error  # noqa: E402
from raymmrec.recsys.report import format_table  # noqa: E402
from train_speed import MMREC_BABY, MMREC_FIRST_GRID, mmrec_folder, run_bench  # noqa: E402


@dataclass
class StepSpeedConfig:
    """Models per size, timed batches (after one warm-up), threads, and where the generated data lives."""

    sizes: dict[str, list[str]] = field(default_factory=lambda: {"baby": ["lightgcn"]})
    batches: int = 8
    batch_size: int = 2048
    params: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(MMREC_FIRST_GRID))
    work: str = "/tmp/raymmrec-bench"
    num_threads: int = 0
    out: str = ""


class _Clock:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def time_one(size: str, model_name: str, cfg: StepSpeedConfig) -> dict[str, Any]:
    """Build `model_name`, time `batches` training steps and one valid-split evaluation in this process."""
    import torch

    from raymmrec.recsys.interaction_data import InteractionData
    from raymmrec.recsys.metrics import evaluate_splits
    from raymmrec.recsys.registry import build_model
    from raymmrec.recsys.sampling import BPRSampler

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    data = InteractionData.from_mmrec_folder(mmrec_folder(size, Path(cfg.work)))
    torch.manual_seed(999)
    with _Clock() as build:
        model = build_model(model_name, cfg.params.get(model_name, {}), data)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = BPRSampler(data, cfg.batch_size, negatives=model.uses_negatives)
    model.train()
    model.pre_epoch(1)
    steps = []
    batches = sampler.epoch()
    for _ in range(min(cfg.batches + 1, len(sampler))):
        with _Clock() as step:
            batch = next(batches)
            optimizer.zero_grad(set_to_none=True)
            model.loss(batch).backward()
            optimizer.step()
        steps.append(step)
    steps = steps[1:] or steps
    model.eval()
    with _Clock() as evaluation:
        metrics = evaluate_splits(model.full_scores, data, ("valid",), [20], 4096, torch.device("cpu"))
    wall, cpu = statistics.median(s.wall for s in steps), statistics.median(s.cpu for s in steps)
    return {"size": size, "model": model_name, "batches/epoch": len(sampler), "timed batches": len(steps),
            "threads": torch.get_num_threads(), "build s": round(build.wall, 1),
            "batch s": round(wall, 3), "batch cpu s": round(cpu, 3),
            "epoch s": round(wall * len(sampler), 1), "epoch cpu s": round(cpu * len(sampler), 1),
            "eval s": round(evaluation.wall, 2), "eval cpu s": round(evaluation.cpu, 2),
            "peak RSS GB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "load avg": round(os.getloadavg()[0], 1), "valid R@20": round(metrics["valid"]["recall@20"], 4),
            "MMRec epoch s": MMREC_BABY[model_name][0] if size == "baby" and model_name in MMREC_BABY else None,
            "MMRec eval s": MMREC_BABY[model_name][1] if size == "baby" and model_name in MMREC_BABY else None}


def _table(rows: list[dict[str, Any]]) -> str:
    return format_table([{k: f"{v:g}" if isinstance(v, float) else ("-" if v is None else v) for k, v in r.items()}
                         for r in rows])


@exit_on_user_error
def main(argv: list[str]) -> None:
    run_bench(argv, StepSpeedConfig, time_one, _table, __file__)


if __name__ == "__main__":
    main(sys.argv[1:])
