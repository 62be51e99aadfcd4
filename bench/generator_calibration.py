"""Is the generated testbed shaped like the papers' Baby? One table, MMRec's protocol (full ranking, training
items masked, early stopping on valid Recall@20), each model at its default (first-grid) settings:
test Recall@20 / NDCG@20 overall and on cold items (< 5 training interactions) for the backbones, next to
training-free references: popularity, item-kNN CF, content kNN on the raw features, and the oracle of the
planted truth (synth_truth.npz).

    python bench/generator_calibration.py                                  # generated `baby` (made once)
    python bench/generator_calibration.py trainer.epochs=60 out=calib.json # cap epochs to fit a time budget
    python bench/generator_calibration.py data=<dataset dir> models='[lightgcn, freedom]' references='[oracle]'
    python bench/generator_calibration.py synth='{off_preference: 0.5}' models='[lightgcn, bm3]' # another setting

Targets (issue 13, real Baby in ALGORITHMS.md §6.2): LightGCN test Recall@20 in 0.05–0.11 with BPR below it;
FREEDOM, LATTICE, BM3, MGCN and AlignRec at >= 1.15x LightGCN; VBPR above BPR; on cold items every model
whose score reads content above LightGCN. The last column reports each row as a ratio to LightGCN.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backbone_accuracy import bench_data_path, model_row  # noqa: E402

from raymmrec.config import load_config  # noqa: E402
from raymmrec.data.schema import SYNTH_TRUTH_FILE  # noqa: E402
from raymmrec.errors import ConfigError, exit_on_user_error  # noqa: E402
from raymmrec.recsys.report import format_table  # noqa: E402
from raymmrec.recsys.trainer import TrainerConfig  # noqa: E402

BACKBONES = ["bpr", "lightgcn", "vbpr", "freedom", "lattice", "bm3", "mgcn", "alignrec"]
REFERENCES = ["popularity", "item_knn", "content_knn", "oracle"]


@dataclass
class GeneratorCalibrationConfig:
    """The dataset, the backbones (default settings unless `params` says), the references and the trainer."""

    data: str = ""                          # empty: generated `baby` under `work`
    synth: dict[str, Any] = field(default_factory=dict)   # generator settings over `baby`'s (e.g. off_preference)
    features: str = "raw"
    work: str = "/tmp/raymmrec-bench"
    models: list[str] = field(default_factory=lambda: list(BACKBONES))
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    references: list[str] = field(default_factory=lambda: list(REFERENCES))
    knn_k: int = 50                         # neighbours of the kNN references
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(epochs=1000, num_threads=1))
    out: str = ""                           # also write the rows as JSON here


def reference_row(name: str, data, root: Path, k: int) -> dict[str, Any]:
    """Test metrics of one training-free scorer."""
    from raymmrec.recsys import reference_scorers
    from raymmrec.recsys.metrics import full_ranking_metrics, popularity_scores

    t0 = time.perf_counter()
    if name == "popularity":
        fn = popularity_scores(data)
    elif name == "item_knn":
        fn = reference_scorers.item_knn_scores(data, k)
    elif name == "content_knn":
        fn = reference_scorers.content_knn_scores(data, "", k)
    elif name == "oracle":
        if not (root / SYNTH_TRUTH_FILE).is_file():
            raise ConfigError(f"references: 'oracle' needs {root / SYNTH_TRUTH_FILE} (a generated dataset dir)")
        fn = reference_scorers.oracle_scorer(data, root / SYNTH_TRUTH_FILE)
    else:
        raise ConfigError(f"references: unknown '{name}' (known: {', '.join(REFERENCES)})")
    t = full_ranking_metrics(fn, data, "test", ks=(20,))
    return {"model": f"[{name}]", "seed": "", "best_epoch": "", "epochs": "", "stop": "",
            "seconds": round(time.perf_counter() - t0, 1), "valid R@20": float("nan"),
            "test R@20": t["recall@20"], "test N@20": t["ndcg@20"], "cold R@20": t["cold_recall@20"],
            "cold N@20": t["cold_ndcg@20"]}


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add test and cold Recall@20 as ratios to LightGCN's (the issue's targets are ratios)."""
    base = next((r for r in rows if r["model"] == "lightgcn"), None)
    if base is None:
        return rows
    return [{**r, "x LightGCN": r["test R@20"] / max(base["test R@20"], 1e-12),
             "cold x LightGCN": r["cold R@20"] / max(base["cold R@20"], 1e-12)} for r in rows]


@exit_on_user_error
def main(argv: list[str]) -> None:
    from raymmrec.recsys.interaction_data import InteractionData

    cfg = load_config(GeneratorCalibrationConfig, argv)
    root = bench_data_path(cfg.data, cfg.work, cfg.synth)
    data = InteractionData.load(root, cfg.features or None)
    print(json.dumps(data.summary()), flush=True)
    rows = []
    for name in cfg.references:
        rows.append(reference_row(name, data, root, cfg.knn_k))
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    for model in cfg.models:
        rows.append(model_row(model, cfg.params.get(model, {}), cfg.trainer, data))
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    rows = with_ratios(rows)
    print()
    print(f"{root}, trainer: epochs <= {cfg.trainer.epochs}, patience {cfg.trainer.patience}, "
          f"eval every {cfg.trainer.eval_every}")
    print(format_table(rows))
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
