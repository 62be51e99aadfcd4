"""Test Recall@20 of backbones × feature sets (CLIPER's plug-and-play claim), with each set's quality report.

    python bench/feature_backbones.py data=/path/to/dataset sets=[random,clip,cliper,beit3] models=[vbpr,freedom]

Every (model, set) trains with the same trainer settings (MMRec's protocol, epochs capped) and reports test
Recall@20 at the best validation epoch. Rows are appended to a JSON file as they finish, so a stopped run
continues where it left off. Feature sets must already exist under <data>/features/ (jobs/extract_features.py,
raymmrec.features.random_set); `labels` renames them in the table.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raymmrec.config import load_config, to_dict  # noqa: E402
from raymmrec.errors import ConfigError, exit_on_user_error  # noqa: E402
from raymmrec.features.quality import QualityConfig, quality_report  # noqa: E402
from raymmrec.recsys.interaction_data import InteractionData  # noqa: E402
from raymmrec.recsys.trainer import TrainerConfig, train_model  # noqa: E402


@dataclass
class FeatureBackbonesConfig:
    """Dataset, feature sets, backbones and the (capped) trainer every run shares."""

    data: str = ""
    sets: list[str] = field(default_factory=lambda: ["random", "clip", "cliper", "beit3"])
    labels: dict[str, str] = field(default_factory=dict)
    models: list[str] = field(default_factory=lambda: ["vbpr", "freedom", "bm3"])
    params: dict[str, dict[str, Any]] = field(default_factory=dict)     # per-model hyper-parameters
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(epochs=30, patience=5, num_threads=1))
    out: str = ""                       # rows JSON; '' = <data>/feature_backbones.json


def _table(rows: list[dict], sets: list[str], models: list[str], labels: dict[str, str], key: str) -> str:
    by = {(r["model"], r["set"]): r for r in rows}
    head = "| backbone | " + " | ".join(labels.get(s, s) for s in sets) + " |"
    lines = [head, "|" + " --- |" * (len(sets) + 1)]
    for m in models:
        cells = [f"{by[(m, s)][key]:.4f}" if (m, s) in by else "–" for s in sets]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@exit_on_user_error
def main(argv: list[str]) -> None:
    cfg = load_config(FeatureBackbonesConfig, argv)
    if not cfg.data:
        raise ConfigError("data: a dataset dir with the feature sets is required")
    out = Path(cfg.out or Path(cfg.data) / "feature_backbones.json")
    rows: list[dict] = json.loads(out.read_text()) if out.is_file() else []
    done = {(r["model"], r["set"], r["trainer"]) for r in rows}
    trainer_key = json.dumps(to_dict(cfg.trainer), sort_keys=True)
    quality: dict[str, dict] = {}
    for s in cfg.sets:
        q = quality_report(cfg.data, s, QualityConfig(mask_modalities=[]))
        quality[s] = {"zero_shot": q["zero_shot/recall@20"], "item_cf": q["item_cf/recall@20"]}
        print(f"quality {cfg.labels.get(s, s):<22} zero-shot R@20 {quality[s]['zero_shot']:.4f}  "
              f"item-CF R@20 {quality[s]['item_cf']:.4f}", flush=True)
    for s in cfg.sets:
        data = InteractionData.from_dataset_dir(cfg.data, features=s)
        for m in cfg.models:
            if (m, s, trainer_key) in done:
                continue
            t0 = time.perf_counter()
            result = train_model(m, cfg.params.get(m, {}), cfg.trainer, data)
            row = {"model": m, "set": s, "test_recall@20": result.test_at_best["recall@20"],
                   "test_ndcg@20": result.test_at_best["ndcg@20"],
                   "test_cold_recall@20": result.test_at_best.get("cold_recall@20", float("nan")),
                   "valid_recall@20": result.best_valid["recall@20"],
                   "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "stop": result.stop_reason,
                   "seconds": round(time.perf_counter() - t0, 1), "trainer": trainer_key}
            rows.append(row)
            out.write_text(json.dumps(rows, indent=2))
            print(f"{m:<8} {cfg.labels.get(s, s):<22} test R@20 {row['test_recall@20']:.4f}  best epoch "
                  f"{row['best_epoch']}/{row['epochs_run']}  {row['seconds']:.0f} s", flush=True)
    rows = [r for r in rows if r["trainer"] == trainer_key]
    print("\ntest Recall@20 at the best validation epoch\n")
    print(_table(rows, cfg.sets, cfg.models, cfg.labels, "test_recall@20"))
    print("\ntest Recall@20 on cold-item targets (< 5 training interactions)\n")
    print(_table(rows, cfg.sets, cfg.models, cfg.labels, "test_cold_recall@20"))
    qrows = [{"model": p, "set": s, "v": quality[s][p]} for s in cfg.sets for p in ("zero_shot", "item_cf")]
    print("\nfeature quality (AlignRec protocols, R@20)\n")
    print(_table(qrows, cfg.sets, ["zero_shot", "item_cf"], cfg.labels, "v"))


if __name__ == "__main__":
    main(sys.argv[1:])
