"""Seconds per training epoch and per full evaluation, start-up and peak memory of each backbone.

    python bench/train_speed.py                       # baby: all models; electronics: LightGCN, FREEDOM
    python bench/train_speed.py sizes='{baby: [lightgcn]}' epochs.baby=5 num_threads=1
    python bench/train_speed.py mmrec_src=/path/to/MMRec/src   # also time MMRec itself, now, same data/threads

Data: planted-cluster interactions of the named size with MMRec's feature shapes (4096-d image,
384-d text), written once as an MMRec folder and loaded through InteractionData like any MMRec set.
Each (size, model) runs in its own process so peak RSS is its own. Hyper-parameters are the first
value of each MMRec grid, as in the MMRec measurement of notes/mmrec-speed.md.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raymmrec.config import load_config  # noqa: E402
from raymmrec.errors import exit_on_user_error  # noqa: E402
from raymmrec.recsys.report import format_table  # noqa: E402

# notes/mmrec-speed.md: MMRec on a generated Baby-size set, this machine kind, quiet (medians).
MMREC_BABY = {  # model: (train s/epoch, eval s for ONE split, start-up s, peak RSS GB)
    "bpr": (0.82, 3.14, 9.5, 1.11), "lightgcn": (3.58, 3.65, 9.4, 1.21), "vbpr": (6.49, 3.70, 10.5, 1.39),
    "freedom": (23.03, 3.21, 16.6, 1.75),
}
MMREC_FIRST_GRID = {  # the first value of each grid in MMRec's yaml
    "bpr": {"reg_weight": 2.0}, "lightgcn": {"n_layers": 1, "reg_weight": 1e-2}, "vbpr": {"reg_weight": 2.0},
    "freedom": {"dropout": 0.8, "reg_weight": 0.0},
}


@dataclass
class TrainSpeedConfig:
    """Which models at which sizes, how many timed epochs, and where the generated data lives."""

    sizes: dict[str, list[str]] = field(default_factory=lambda: {
        "baby": ["bpr", "lightgcn", "vbpr", "freedom"], "electronics": ["lightgcn", "freedom"]})
    epochs: dict[str, int] = field(default_factory=lambda: {"small": 3, "baby": 3, "electronics": 2})
    params: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(MMREC_FIRST_GRID))
    work: str = "/tmp/raymmrec-bench"
    num_threads: int = 0                    # 0: torch's default (all cores)
    eval_batch_size: int = 4096
    mmrec_src: str = ""                     # MMRec's src/: also time MMRec itself now, same data and threads
    out: str = ""                           # also write the rows as JSON here


def mmrec_folder(size: str, work: Path) -> Path:
    """The planted set of `size` as an MMRec folder, generated on first use."""
    folder = work / f"planted-{size}"
    if not (folder / f"planted-{size}.inter").is_file():
        import numpy as np

        from raymmrec.recsys.planted_data import planted_interactions

        t0 = time.perf_counter()
        p = planted_interactions(size)
        folder.mkdir(parents=True, exist_ok=True)
        table = np.stack([p.users, p.items, np.ones_like(p.users), np.zeros_like(p.users), p.splits], axis=1)
        np.savetxt(folder / f"planted-{size}.inter", table, fmt="%d", delimiter="\t",
                   header="userID\titemID\trating\ttimestamp\tx_label", comments="")
        np.save(folder / "image_feat.npy", p.features["image"])
        np.save(folder / "text_feat.npy", p.features["text"])
        print(f"generated {folder} in {time.perf_counter() - t0:.0f}s", flush=True)
    return folder


def time_one(size: str, model: str, cfg: TrainSpeedConfig) -> dict[str, Any]:
    """Load, build and train `model` for the configured epochs in this process; timings and peak RSS."""
    from raymmrec.recsys.interaction_data import InteractionData
    from raymmrec.recsys.trainer import TrainerConfig, train_model

    t0 = time.perf_counter()
    data = InteractionData.from_mmrec_folder(mmrec_folder(size, Path(cfg.work)))
    load_s = time.perf_counter() - t0
    records: list[dict] = []
    trainer = TrainerConfig(epochs=cfg.epochs[size], patience=1000, num_threads=cfg.num_threads,
                            eval_batch_size=cfg.eval_batch_size)
    t1 = time.perf_counter()
    result = train_model(model, cfg.params.get(model, {}), trainer, data, report=records.append)
    total = time.perf_counter() - t1
    import torch

    return {
        "size": size, "model": model, "users": data.n_users, "items": data.n_items, "train": data.n_train,
        "epochs": len(records), "threads": torch.get_num_threads() if cfg.num_threads == 0 else cfg.num_threads,
        "train_s": statistics.median(r["train_seconds"] for r in records),
        "eval_s": statistics.median(r["eval_seconds"] for r in records),
        "load_s": load_s, "build_s": total - sum(r["seconds"] for r in records),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "valid_recall@20": result.best_valid.get("recall@20"),
        "load_avg": os.getloadavg()[0],   # the cores are shared: > threads means contended timings
    }


def time_mmrec(size: str, model: str, cfg: TrainSpeedConfig) -> dict[str, float]:
    """MMRec's own medians on the same folder, hyper-parameters and thread count, measured now."""
    from mmrec_runner import epoch_timings, run_mmrec

    config = {"seed": [999], "epochs": cfg.epochs[size] + 1, **{k: [v] for k, v in cfg.params.get(model, {}).items()}}
    run = run_mmrec(cfg.mmrec_src, model, mmrec_folder(size, Path(cfg.work)), config, Path(cfg.work),
                    threads=cfg.num_threads or os.cpu_count() or 1)
    return {**{f"mmrec_{k}": v for k, v in epoch_timings(run.log).items()}, "mmrec_peak_rss_gb": run.peak_rss_gb}


def table(rows: list[dict[str, Any]]) -> str:
    """Our figures next to MMRec's (Baby) as a fixed-width text table."""
    out = []
    for r in rows:
        mm = MMREC_BABY.get(r["model"]) if r["size"] == "baby" else None
        ours = r["train_s"] + r["eval_s"]
        theirs = mm[0] + 2 * mm[1] if mm else None
        out.append({
            "size": r["size"], "model": r["model"], "threads": str(r["threads"]), "train s/ep": f"{r['train_s']:.2f}",
            "eval s (v+t)": f"{r['eval_s']:.2f}", "epoch+eval s": f"{ours:.2f}",
            "MMRec ep+2×eval": f"{theirs:.2f}" if mm else "does not fit" if r["model"] == "freedom" else "-",
            "speed-up": f"{theirs / ours:.1f}×" if mm else "-", "load s": f"{r['load_s']:.1f}",
            "build s": f"{r['build_s']:.1f}", "peak RSS GB": f"{r['peak_rss_gb']:.2f}",
            "MMRec RSS GB": f"{mm[3]:.2f}" if mm else "-", "load avg": f"{r.get('load_avg', float('nan')):.1f}"})
        if "mmrec_epoch_s" in r:   # MMRec measured in this run, under the same load
            out[-1].update({"MMRec now ep+eval s": f"{r['mmrec_epoch_s']:.2f}",
                            "speed-up now": f"{r['mmrec_epoch_s'] / ours:.1f}×",
                            "MMRec now RSS GB": f"{r['mmrec_peak_rss_gb']:.2f}"})
    return format_table(out)


@exit_on_user_error
def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        size, model, cfg_json = argv[1], argv[2], argv[3]
        cfg = TrainSpeedConfig(**json.loads(cfg_json))
        print("RESULT " + json.dumps(time_one(size, model, cfg)), flush=True)
        return
    cfg = load_config(TrainSpeedConfig, argv)
    rows = []
    for size, models in cfg.sizes.items():
        mmrec_folder(size, Path(cfg.work))
        for model in models:
            print(f"timing {model} at {size} ...", flush=True)
            proc = subprocess.run([sys.executable, __file__, "--one", size, model, json.dumps(cfg.__dict__)],
                                  capture_output=True, text=True)
            found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode != 0 or not found:
                print(f"  failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}", flush=True)
                continue
            rows.append(json.loads(found[0][len("RESULT "):]))
            if cfg.mmrec_src and size in ("small", "baby"):
                rows[-1].update(time_mmrec(size, model, cfg))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
