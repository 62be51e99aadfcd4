"""Test Recall@20 / NDCG@20, overall and on cold items, of each backbone trained to early stopping.

    python bench/backbone_accuracy.py                         # generated `baby` (raymmrec.data.synth)
    python bench/backbone_accuracy.py data=<dataset dir or MMRec folder> models='[lightgcn, freedom]'

Cold items have fewer than 5 training interactions: only content features can place them, so the
multimodal models (VBPR, FREEDOM) should beat LightGCN there.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raymmrec.config import load_config  # noqa: E402
from raymmrec.errors import exit_on_user_error  # noqa: E402
from raymmrec.recsys.report import format_table  # noqa: E402
from raymmrec.recsys.trainer import TrainerConfig, train_model  # noqa: E402


@dataclass
class BackboneAccuracyConfig:
    """Models, their hyper-parameters (defaults when absent), the data and the trainer."""

    models: list[str] = field(default_factory=lambda: ["bpr", "lightgcn", "vbpr", "freedom"])
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: str = ""                          # empty: generate raymmrec.data.synth `baby` under `work`
    features: str = "raw"
    work: str = "/tmp/raymmrec-bench"
    seeds: list[int] = field(default_factory=lambda: [999])
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(epochs=400))
    out: str = ""


def bench_data_path(data: str, work: str, synth: dict[str, Any] | None = None) -> Path:
    """The dataset to bench: `data`, or generated `baby` under `work` with `synth` settings (made once)."""
    from raymmrec.config import from_dict
    from raymmrec.data.synth import SynthConfig, generate_dataset

    if data:
        return Path(data)
    cfg = from_dict(SynthConfig, {"size": "baby", "seed": 0, **(synth or {})}, prefix="synth.")
    # one folder per setting, so calibrating a generator knob never reuses another setting's dataset
    tag = "".join(f"-{k}{v}" for k, v in sorted((synth or {}).items()) if k not in ("size", "seed"))
    path = Path(work) / (f"synth-{cfg.size}{tag}" + (f"-seed{cfg.seed}" if cfg.seed else ""))
    if not (path / "stats.json").is_file():
        generate_dataset(cfg, path)
    return path


def model_row(model: str, params: dict[str, Any], trainer: TrainerConfig, data) -> dict[str, Any]:
    """Train one model to early stopping (or the epoch cap); its table row of test metrics at the best epoch."""
    r = train_model(model, params, trainer, data)
    t = r.test_at_best
    return {"model": model, "seed": trainer.seed, "best_epoch": r.best_epoch, "epochs": r.epochs_run,
            "stop": r.stop_reason, "seconds": round(r.seconds, 1),
            "valid R@20": r.best_valid["recall@20"], "test R@20": t["recall@20"],
            "test N@20": t["ndcg@20"], "cold R@20": t["cold_recall@20"], "cold N@20": t["cold_ndcg@20"]}


@exit_on_user_error
def main(argv: list[str]) -> None:
    from raymmrec.recsys.interaction_data import InteractionData

    cfg = load_config(BackboneAccuracyConfig, argv)
    data = InteractionData.load(bench_data_path(cfg.data, cfg.work), cfg.features or None)
    print(json.dumps(data.summary()), flush=True)
    rows = []
    for model in cfg.models:
        for seed in cfg.seeds:
            trainer = TrainerConfig(**{**cfg.trainer.__dict__, "seed": seed})
            rows.append(model_row(model, cfg.params.get(model, {}), trainer, data))
            print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(format_table(rows))
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
