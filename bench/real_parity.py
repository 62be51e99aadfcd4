"""Parity on a real MMRec folder: MMRec (unmodified) and raymmrec side by side, any models and seeds, curves kept.

    python bench/real_parity.py mmrec_src=/path/MMRec/src folder=/path/to/tiktok text_feature=audio_feat.npy \
        models='[freedom, lightgcn]' seeds='[999, 1, 2]' [epochs=150 batch_size=2048 patience=20 work=...]

The folder is copied once into `<work>/data/<name>/` in the form MMRec reads: the .inter without carriage
returns and with `rating` / `timestamp` columns when absent, `image_feat.npy` / `text_feat.npy` taken from
`image_feature` / `text_feature` (e.g. TikTok's audio as the text slot). A changed source empties that copy,
so MMRec's graph caches (named by k only) never outlive the features they came from. Both sides read the
copy. Each (model, seed) runs once per trainer setting: MMRec in its own process (its transcript is reused
when it holds that seed and those hyper-parameters), ours in this process, the two sides at the same time.
Per-epoch curves of both go to `<work>/curves/<model>-<seed>-<side>.csv`; the table gives each side's
mean ± spread (population sd) of test Recall@20 / NDCG@20 at the best validation epoch, the relative Δ,
and the per-epoch Δ of validation Recall@20 (same seed number, averaged over the epochs both ran: free of
best-epoch selection noise, not of seed noise, since the two sides draw different random streams).
"""
from __future__ import annotations

import csv
import json
import math
import re
import shutil
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmrec_parity import ParityConfig, run_mmrec_seeds  # noqa: E402  (bench/ is the script's folder)

from raymmrec.config import load_config  # noqa: E402
from raymmrec.errors import ConfigError, DataError, exit_on_user_error  # noqa: E402
from raymmrec.recsys.report import format_table  # noqa: E402

CURVE_METRICS = ("recall@20", "ndcg@20")
_EVAL = re.compile(r"epoch (\d+) evaluating [^\n]*\n[^\n]*valid result: ?\n([^\n]*)\n[^\n]*test result: ?\n([^\n]*)")
_LOSS = re.compile(r"epoch (\d+) training \[time: [0-9.]+s, train loss: ([-0-9.naif]+)\]")


@dataclass
class RealParityConfig(ParityConfig):
    """Both implementations on one real MMRec folder (MMRec's trainer defaults, capped epochs)."""

    folder: str = ""                       # an MMRec folder: <name>.inter + feature .npy files
    image_feature: str = "image_feat.npy"  # file in `folder` for MMRec's image slot ("" = none)
    text_feature: str = "text_feat.npy"    # file in `folder` for MMRec's text slot ("" = none)
    work: str = "/tmp/raymmrec-real-parity"
    models: list[str] = field(default_factory=lambda: ["freedom"])
    sides: list[str] = field(default_factory=lambda: ["mmrec", "ours"])
    epochs: int = 150
    batch_size: int = 2048


def prepare_folder(cfg: RealParityConfig) -> Path:
    """`<work>/data/<name>/`: the folder as MMRec reads it, rebuilt only when a source file changed."""
    src = Path(cfg.folder)
    inters = sorted(src.glob("*.inter")) if src.is_dir() else []
    if len(inters) != 1:
        raise ConfigError(f"folder '{src}': expected an MMRec folder with one <name>.inter, found {len(inters)}")
    slots = {"image_feat.npy": cfg.image_feature, "text_feat.npy": cfg.text_feature}
    sources = [inters[0]] + [src / f for f in slots.values() if f]
    for path in sources:
        if not path.is_file():
            raise ConfigError(f"folder '{src}': no file '{path.name}' (image_feature / text_feature name files in it)")
    identity = {str(p.resolve()): [p.stat().st_size, p.stat().st_mtime_ns] for p in sources} | {"slots": slots}
    name = inters[0].stem
    out = Path(cfg.work) / "data" / name
    stamp = out / "source.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == identity:
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    _write_inter(inters[0], out / f"{name}.inter")
    for slot, file in slots.items():
        if file:
            shutil.copyfile(src / file, out / slot)
    stamp.write_text(json.dumps(identity))
    return out


def _write_inter(source: Path, target: Path) -> None:
    """Copy a .inter without carriage returns, adding rating 1 / timestamp 0 columns when it has none."""
    lines = source.read_text().replace("\r\n", "\n").replace("\r", "\n").splitlines()
    header = lines[0].split("\t") if lines else []
    if not {"userID", "itemID", "x_label"} <= set(header):
        raise DataError(f"'{source}': header {header} lacks userID, itemID and x_label (tab-separated)")
    extra = [c for c in ("rating", "timestamp") if c not in header]
    fill = "".join("\t1" if c == "rating" else "\t0" for c in extra)
    body = [lines[0] + "".join(f"\t{c}" for c in extra)] + [line + fill for line in lines[1:] if line]
    target.write_text("\n".join(body) + "\n")


def _metrics(line: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"([a-z]+@\d+): ([0-9.]+)", line)}


def mmrec_curve(transcript: str, n_batches: int) -> list[dict[str, float]]:
    """Per-epoch rows (1-based epoch, mean batch loss, valid / test metrics) from an MMRec transcript of one run."""
    losses = {int(e) + 1: float(v) / n_batches for e, v in _LOSS.findall(transcript)}
    rows = []
    for epoch, valid, test in _EVAL.findall(transcript):
        e = int(epoch) + 1
        v, t = _metrics(valid), _metrics(test)
        rows.append({"epoch": e, "train_loss": losses.get(e, math.nan),
                     **{f"valid/{m}": v[m] for m in CURVE_METRICS}, **{f"test/{m}": t[m] for m in CURVE_METRICS}})
    return rows


def _settings_dir(cfg: RealParityConfig, side: str, model: str, seed: int) -> Path:
    params = "-".join(f"{k}{v}" for k, v in sorted(cfg.params.get(model, {}).items()))
    setting = f"e{cfg.epochs}-b{cfg.batch_size}-lr{cfg.lr}-p{cfg.patience}" + (f"-{params}" if params else "")
    return Path(cfg.work) / side / model / setting / f"seed{seed}"


def run_mmrec_seed(cfg: RealParityConfig, model: str, seed: int, folder: Path, n_batches: int) -> dict[str, Any]:
    """One MMRec run (or its kept transcript): test metrics at the best validation epoch and the curve."""
    where = _settings_dir(cfg, "mmrec", model, seed)
    where.mkdir(parents=True, exist_ok=True)
    test = run_mmrec_seeds(replace(cfg, seeds=[seed], work=str(where)), model, folder)[seed]
    curve = mmrec_curve((where / f"mmrec-{model}-{folder.name}.out").read_text(), n_batches)
    return {"test": test, "curve": curve}


def run_ours_seed(cfg: RealParityConfig, model: str, seed: int, data) -> dict[str, Any]:
    """One raymmrec run (or its kept result): test metrics at the best validation epoch and the curve."""
    from raymmrec.recsys.trainer import TrainerConfig, train_model

    kept = _settings_dir(cfg, "ours", model, seed) / "result.json"
    if kept.is_file():
        print(f"ours {model} seed {seed}: reusing {kept} (delete it to rerun)", flush=True)
        return json.loads(kept.read_text())
    trainer = TrainerConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience,
                            seed=seed, num_threads=1)
    result = train_model(model, cfg.params.get(model, {}), trainer, data)
    keys = ["train_loss"] + [f"{s}/{p}{m}" for s in ("valid", "test") for p in ("", "cold_") for m in CURVE_METRICS]
    curve = [{"epoch": r["epoch"], **{k: r[k] for k in keys if k in r}} for r in result.history]
    out = {"test": result.test_at_best, "curve": curve}
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(out))
    return out


def write_curve(path: Path, rows: list[dict[str, float]]) -> None:
    """A curve as CSV (one row per epoch, columns in first-seen order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)


def paired_curve_delta(theirs: list[dict], ours: list[dict], metric: str = "valid/recall@20") -> float:
    """Mean over the evaluated epochs both ran of ours / MMRec − 1 (in %) for `metric`."""
    a = {r["epoch"]: r[metric] for r in theirs if metric in r}
    b = {r["epoch"]: r[metric] for r in ours if metric in r}
    common = [e for e in sorted(a) if e in b and a[e] > 0]
    return 100 * statistics.mean(b[e] / a[e] - 1 for e in common) if common else math.nan


def _spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f}±{statistics.pstdev(values):.4f}" if values else "-"


def summary_row(model: str, seeds: list[int], runs: dict[str, dict[int, dict]]) -> dict[str, Any]:
    """One table row: per side mean ± spread of test R@20 / N@20, Δ of the means, paired curve Δ, best epochs."""
    row: dict[str, Any] = {"model": model, "seeds": ",".join(map(str, seeds))}
    both = "mmrec" in runs and "ours" in runs
    for metric in CURVE_METRICS:
        per_side = {side: [runs[side][s]["test"][metric] for s in seeds] for side in runs}
        for side, values in per_side.items():
            row[f"{side} {metric}"] = _spread(values)
        if both:
            ratio = statistics.mean(per_side["ours"]) / statistics.mean(per_side["mmrec"])
            row[f"Δ {metric}"] = f"{100 * (ratio - 1):+.1f}%"
    if both:
        deltas = [paired_curve_delta(runs["mmrec"][s]["curve"], runs["ours"][s]["curve"]) for s in seeds]
        row["curve Δ valid R@20"] = f"{statistics.mean(deltas):+.1f}%"
    for side in runs:
        row[f"{side} best epochs"] = ",".join(str(_best_epoch(runs[side][s]["curve"])) for s in seeds)
    if "ours" in runs:
        row["ours cold R@20"] = _spread([runs["ours"][s]["test"].get("cold_recall@20", math.nan) for s in seeds])
    return row


def _best_epoch(curve: list[dict]) -> int:
    best, epoch = -1.0, 0
    for r in curve:
        if r.get("valid/recall@20", -1.0) > best:       # MMRec's strict rule
            best, epoch = r["valid/recall@20"], r["epoch"]
    return epoch


@exit_on_user_error
def main(argv: list[str]) -> None:
    cfg = load_config(RealParityConfig, argv)
    unknown = set(cfg.sides) - {"mmrec", "ours"}
    if unknown or not cfg.sides:
        raise ConfigError(f"sides: expected a non-empty subset of [mmrec, ours], got {cfg.sides}")
    if "mmrec" in cfg.sides and not (Path(cfg.mmrec_src) / "utils" / "quick_start.py").is_file():
        raise ConfigError(f"mmrec_src '{cfg.mmrec_src}' is not MMRec's src folder (no utils/quick_start.py)")
    folder = prepare_folder(cfg)
    from raymmrec.recsys.interaction_data import InteractionData

    data = InteractionData.from_mmrec_folder(folder)
    n_batches = -(-data.n_train // cfg.batch_size)
    jobs = [(m, s) for m in cfg.models for s in cfg.seeds]
    runs: dict[str, dict[str, dict[int, dict]]] = {m: {side: {} for side in cfg.sides} for m in cfg.models}
    with ThreadPoolExecutor(max_workers=1) as pool:      # MMRec's runs, one process at a time, beside ours
        pending = ({j: pool.submit(run_mmrec_seed, cfg, *j, folder, n_batches) for j in jobs}
                   if "mmrec" in cfg.sides else {})
        for model, seed in jobs:
            if "ours" in cfg.sides:
                runs[model]["ours"][seed] = run_ours_seed(cfg, model, seed, data)
                print(f"ours  {model} seed {seed}: {runs[model]['ours'][seed]['test'].get('recall@20')}", flush=True)
        for (model, seed), future in pending.items():
            runs[model]["mmrec"][seed] = future.result()
            print(f"MMRec {model} seed {seed}: {runs[model]['mmrec'][seed]['test'].get('recall@20')}", flush=True)
    rows = []
    for model in cfg.models:
        for side, per_seed in runs[model].items():
            for seed, run in per_seed.items():
                write_curve(Path(cfg.work) / "curves" / f"{model}-{seed}-{side}.csv", run["curve"])
        rows.append(summary_row(model, cfg.seeds, runs[model]))
    table = format_table(rows)
    print(table)
    (Path(cfg.work) / "real_parity.json").write_text(json.dumps(rows, indent=1))
    (Path(cfg.work) / "real_parity.txt").write_text(table + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
