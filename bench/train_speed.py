"""Seconds per training epoch and per full evaluation, start-up and peak memory of each backbone.

    python bench/train_speed.py                       # baby: all models; electronics: LightGCN, FREEDOM
    python bench/train_speed.py sizes='{baby: [lightgcn]}' epochs.baby=5 num_threads=1
    python bench/train_speed.py sizes='{baby: [lightgcn]}' mmrec_src=<enoche/MMRec>/src   # MMRec timed alongside

Data: planted-cluster interactions of the named size with MMRec's feature shapes (4096-d image,
384-d text), written once as an MMRec folder and loaded through InteractionData like any MMRec set.
Each (size, model) runs in its own process so peak RSS is its own. Hyper-parameters are the first
value of each MMRec grid, as in the MMRec measurement of notes/mmrec-speed.md.
"""
from __future__ import annotations

import json
import math
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmrec_parity import mmrec_run_config  # noqa: E402  (bench/ is the script's folder)
from mmrec_runner import MMREC_NAMES, epoch_timings, run_mmrec  # noqa: E402
from raymmrec.config import load_config  # noqa: E402
from raymmrec.errors import exit_on_user_error  # noqa: E402

# notes/mmrec-speed.md: MMRec on a generated Baby-size set, this machine kind, quiet (medians).
MMREC_BABY = {  # model: (train s/epoch, eval s for ONE split, start-up s, peak RSS GB)
    "bpr": (0.82, 3.14, 9.5, 1.11), "lightgcn": (3.58, 3.65, 9.4, 1.21), "vbpr": (6.49, 3.70, 10.5, 1.39),
    "freedom": (23.03, 3.21, 16.6, 1.75),
    "mmgcn": (116.53, 3.61, 9.7, 2.39), "grcn": (65.58, 2.85, 10.4, 2.64), "dualgnn": (68.35, 2.98, 11.8, 1.78),
}
# MMRec's dense n_items² (FREEDOM) or n_users² (DualGNN preprocessing) matrices cannot fit at Electronics size.
MMREC_DOES_NOT_FIT = {"freedom", "dualgnn"}
MMREC_BABY.update({"lattice": (47.39, 14.65, 42.0, 3.61), "bm3": (21.99, 3.02, 9.8, 1.70),
                   "mgcn": (30.18, 3.45, 19.7, 2.02)})
MMREC_FIRST_GRID = {  # the first value of each grid in MMRec's yaml
    "bpr": {"reg_weight": 2.0}, "lightgcn": {"n_layers": 1, "reg_weight": 1e-2}, "vbpr": {"reg_weight": 2.0},
    "freedom": {"dropout": 0.8, "reg_weight": 0.0},
    "mmgcn": {"reg_weight": 0.0}, "grcn": {"reg_weight": 0.1}, "dualgnn": {"reg_weight": 0.1},
    "slmrec": {"ssl_temp": 0.1, "ssl_alpha": 0.01},
}
MMREC_FIRST_GRID.update({"lattice": {"reg_weight": 0.0}, "bm3": {"n_layers": 1, "reg_weight": 0.1, "dropout": 0.3},
                         "mgcn": {"cl_loss": 1e-3}, "alignrec": {"cca_weight": 1e-4, "sim_weight": 0.1}})
MMREC_FIRST_GRID.update({"dragon": {"reg_weight": 0.1}, "pgl": {"dropout": 0.2, "reg_weight": 0.0, "mode": "local"},
                         "smore": {"n_ui_layers": 3, "image_knn_k": 10, "text_knn_k": 10, "reg_weight": 1e-5,
                                   "dropout_rate": 0.0},
                         "damrs": {"n_ui_layers": 2, "neighbor_weight": 1e-3, "kl_weight": 1.0, "n_mm_layers": 1},
                         "mvgae": {"beta": 0.01}})
MMREC_FIRST_GRID.update({  # MMRec's yaml lists every value as a grid: each key it lists must be given
    "layergcn": {"n_layers": 4, "reg_weight": 1e-2, "dropout": 0.0},
    "selfcf": {"n_layers": 1, "dropout": 0.1, "reg_weight": 0.1}, "itemknncbf": {"knn_k": 10, "shrink": 10},
    "mmgcf": {"n_ui_layers": 1, "reg_weight": 0.1, "fusion_mode": "mean", "weighting": "equal", "dropout": 0.2},
    "lgmrec": {"n_ui_layers": 2, "n_mm_layers": 2, "n_hyper_layer": 1, "hyper_num": 4, "keep_rate": 0.5, "alpha": 0.3,
               "cl_weight": 1e-4, "reg_weight": 1e-6}})
# MMRec builds dense n_items² item–item matrices for these: 15.9 GB each at Electronics' 63k items
# (ItemKNNCBF's similarity, and its dense n_users × n_items score matrix: 48 GB more).
DENSE_IN_MMREC = {"freedom", "lattice", "mgcn", "alignrec", "itemknncbf"}


@dataclass
class TrainSpeedConfig:
    """Which models at which sizes, how many timed epochs, and where the generated data lives."""

    sizes: dict[str, list[str]] = field(default_factory=lambda: {
        "baby": ["bpr", "lightgcn", "vbpr", "freedom"], "electronics": ["lightgcn", "freedom"]})
    epochs: dict[str, int] = field(default_factory=lambda: {"baby": 3, "electronics": 2})
    # size → training batches to time instead of whole epochs (the epoch time extrapolated from them, then one
    # evaluation): peak memory is reached in the first batches and the evaluation, so a 10×-larger set's
    # memory is measured in minutes rather than the hours one epoch takes on two cores
    batches: dict[str, int] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(MMREC_FIRST_GRID))
    work: str = "/tmp/raymmrec-bench"
    num_threads: int = 0                    # 0: torch's default (all cores)
    eval_batch_size: int = 4096
    out: str = ""                           # also write the rows as JSON here
    # MMRec's src folder: time MMRec right after each of our runs on the same folder, same hyper-parameters
    # and epochs, so both sides see the same machine state (otherwise notes/mmrec-speed.md's figures)
    mmrec_src: str = ""


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
    if cfg.batches.get(size):
        return {**time_batches(size, model, cfg, data, cfg.batches[size]), "load_s": load_s}
    records: list[dict] = []
    trainer = TrainerConfig(epochs=cfg.epochs[size], patience=1000, num_threads=cfg.num_threads,
                            eval_batch_size=cfg.eval_batch_size)
    t1 = time.perf_counter()
    result = train_model(model, cfg.params.get(model, {}), trainer, data, report=records.append)
    total = time.perf_counter() - t1
    import torch

    threads = torch.get_num_threads() if cfg.num_threads == 0 else cfg.num_threads
    row = {
        "size": size, "model": model, "users": data.n_users, "items": data.n_items, "train": data.n_train,
        "epochs": len(records), "threads": threads,
        "train_s": statistics.median(r["train_seconds"] for r in records),
        "eval_s": statistics.median(r["eval_seconds"] for r in records),
        "load_s": load_s, "build_s": total - sum(r["seconds"] for r in records),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "valid_recall@20": result.best_valid.get("recall@20"),
    }
    if cfg.mmrec_src and model in MMREC_NAMES:
        row["mmrec"] = mmrec_timing(cfg, size, model, threads)
    return row


def time_batches(size: str, model_name: str, cfg: TrainSpeedConfig, data: Any, n: int) -> dict[str, Any]:
    """Build, train `n` batches, evaluate once: extrapolated s/epoch, eval s and peak RSS in this process."""
    import torch

    from raymmrec.recsys.metrics import evaluate_splits
    from raymmrec.recsys.sampling import BPRSampler
    from raymmrec.recsys.trainer import EVAL_SPLITS, TrainerConfig, adam_optimizer, build_model, train_epoch

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    trainer = TrainerConfig(batch_size=2048, eval_batch_size=cfg.eval_batch_size)
    t0 = time.perf_counter()
    _, _, model = build_model(model_name, cfg.params.get(model_name, {}), trainer, data)
    build_s = time.perf_counter() - t0
    sampler = BPRSampler(data, trainer.batch_size, trainer.seed, model.uses_negatives, model.device)
    done, t1 = 0, time.perf_counter()
    if model.learns:
        model.train()
        model.pre_epoch(1)
        loss = train_epoch(model, sampler, adam_optimizer(model.param_groups(trainer.lr), trainer), max_batches=n)
        if not math.isfinite(loss):
            raise RuntimeError(f"{model_name} at {size}: non-finite training loss in the first {n} batches")
        done = min(n, len(sampler))
    per_batch = (time.perf_counter() - t1) / max(done, 1)
    model.eval()
    t2 = time.perf_counter()
    metrics = evaluate_splits(model.full_scores, data, EVAL_SPLITS, trainer.topk, trainer.eval_batch_size,
                              model.device)
    eval_s = time.perf_counter() - t2
    return {"size": size, "model": model_name, "users": data.n_users, "items": data.n_items, "train": data.n_train,
            "epochs": f"{done}/{len(sampler)} batches", "threads": torch.get_num_threads(),
            "train_s": per_batch * len(sampler) if done else 0.0, "eval_s": eval_s, "build_s": build_s,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "valid_recall@20": metrics["valid"].get("recall@20")}


def mmrec_timing(cfg: TrainSpeedConfig, size: str, model: str, threads: int) -> dict[str, float]:
    """MMRec's median train s/epoch, ONE evaluation's s and peak RSS for `model` on the same folder."""
    folder = mmrec_folder(size, Path(cfg.work))
    config = mmrec_run_config(cfg.mmrec_src, model, folder, cfg.params.get(model, {}), seeds=[999],
                              epochs=cfg.epochs[size], batch_size=2048, lr=1e-3, patience=1000,
                              extra={"eval_batch_size": cfg.eval_batch_size})
    run = run_mmrec(cfg.mmrec_src, model, folder, config, Path(cfg.work), threads)
    timing = epoch_timings(run.log)
    return {"train_s": timing["train_s"], "eval_s": timing["valid_s"], "peak_rss_gb": run.peak_rss_gb}


def table(rows: list[dict[str, Any]]) -> str:
    """Our figures next to MMRec's (Baby) as a fixed-width text table."""
    head = ["size", "model", "train s/ep", "eval s (v+t)", "epoch+eval s", "MMRec ep+2×eval", "speed-up",
            "load s", "build s", "peak RSS GB", "MMRec RSS GB"]
    out = []
    for r in rows:
        live = r.get("mmrec")
        # a batches-only row's epoch time is extrapolated from a few warm-up batches: no speed-up against it
        partial = isinstance(r["epochs"], str)
        mm = ((live["train_s"], live["eval_s"], None, live["peak_rss_gb"]) if live
              else MMREC_BABY.get(r["model"]) if r["size"] == "baby" and not partial else None)
        ours = r["train_s"] + r["eval_s"]
        theirs = mm[0] + 2 * mm[1] if mm else None
        dense = r["size"] == "electronics" and r["model"] in DENSE_IN_MMREC
        out.append([r["size"], r["model"], f"{r['train_s']:.2f}", f"{r['eval_s']:.2f}", f"{ours:.2f}",
                    f"{theirs:.2f}" if mm else "does not fit" if r["model"] in MMREC_DOES_NOT_FIT or dense else "-",
                    f"{theirs / ours:.1f}×" if mm else "-", f"{r['load_s']:.1f}", f"{r['build_s']:.1f}",
                    f"{r['peak_rss_gb']:.2f}", f"{mm[3]:.2f}" if mm else "-"])
    widths = [max([len(h), *(len(row[i]) for row in out)]) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in out]
    return "\n".join(lines)


def each_in_own_process(script: str, cfg: Any, table_of: Callable[[list[dict]], str]) -> list[dict[str, Any]]:
    """Run `script --one <size> <model> <cfg as JSON>` for every model of cfg.sizes, each in a fresh process
    (so peak RSS is its own), printing each row as it comes; the rows its RESULT lines carried."""
    rows = []
    for size, models in cfg.sizes.items():
        mmrec_folder(size, Path(cfg.work))
        for model in models:
            print(f"timing {model} at {size} ...", flush=True)
            proc = subprocess.run([sys.executable, script, "--one", size, model, json.dumps(cfg.__dict__)],
                                  capture_output=True, text=True)
            found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode != 0 or not found:
                print(f"  failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}", flush=True)
                continue
            rows.append(json.loads(found[0][len("RESULT "):]))
            print(table_of(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def run_bench(argv: list[str], config_cls: type, time_one_fn: Callable, table_of: Callable, script: str) -> None:
    """A timing bench's command line: `--one size model cfg` times in this process, otherwise every
    configured (size, model) runs in its own process and the table is printed (and saved to cfg.out)."""
    if argv[:1] == ["--one"]:
        size, model, cfg_json = argv[1], argv[2], argv[3]
        print("RESULT " + json.dumps(time_one_fn(size, model, config_cls(**json.loads(cfg_json)))), flush=True)
        return
    cfg = load_config(config_cls, argv)
    rows = each_in_own_process(script, cfg, table_of)
    print()
    print(table_of(rows))
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(rows, indent=1))


@exit_on_user_error
def main(argv: list[str]) -> None:
    run_bench(argv, TrainSpeedConfig, time_one, table, __file__)


if __name__ == "__main__":
    main(sys.argv[1:])
