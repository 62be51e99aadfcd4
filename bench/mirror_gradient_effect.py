"""Mirror Gradient's effect: mean test Recall@20 / NDCG@20 over seeds, with and without it, per model.

    python bench/mirror_gradient_effect.py [models='[lightgcn, mmgcf]'] [seeds='[999, 1, 2]'] [mg.alpha2=0.2]
    python bench/mirror_gradient_effect.py mmrec_src=/path/MMRec/src      # MMRec's own --mg side by side

Same data (generated `small` unless `data` is set), hyper-parameters and trainer settings as
bench/mmrec_parity.py; the only difference between the two columns is `trainer.mirror_gradient`.
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmrec_parity import ParityConfig, _mmrec_folder, run_mmrec_seeds, run_ours  # noqa: E402

from raymmrec.config import load_config  # noqa: E402
from raymmrec.errors import exit_on_user_error  # noqa: E402
from raymmrec.recsys.report import format_table  # noqa: E402


@dataclass
class MirrorEffectConfig(ParityConfig):
    """mmrec_parity's settings; models default to two, and MMRec runs only when mmrec_src is set."""

    models: list[str] = field(default_factory=lambda: ["lightgcn", "mmgcf"])
    work: str = "/tmp/raymmrec-mirror-gradient"


def _mean(runs: dict[int, dict[str, float]], metric: str) -> float:
    return statistics.mean(r[metric] for r in runs.values())


@exit_on_user_error
def main(argv: list[str]) -> None:
    cfg = load_config(MirrorEffectConfig, argv)
    Path(cfg.work).mkdir(parents=True, exist_ok=True)
    folder = _mmrec_folder(cfg)
    rows = []
    for model in cfg.models:
        row = {"model": model, "seeds": len(cfg.seeds),
               "mg": f"α1={cfg.mg['alpha1']} α2={cfg.mg['alpha2']} β={int(cfg.mg['beta'])}"}
        for side, run in (("ours", run_ours), ("MMRec", run_mmrec_seeds if cfg.mmrec_src else None)):
            if run is None:
                continue
            t0 = time.perf_counter()
            plain = run(replace(cfg, mirror_gradient=False), model, folder)
            t1 = time.perf_counter()
            mirrored = run(replace(cfg, mirror_gradient=True), model, folder)
            t2 = time.perf_counter()
            for metric in ("recall@20", "ndcg@20"):
                a, b = _mean(plain, metric), _mean(mirrored, metric)
                row[f"{side} {metric}"] = f"{a:.4f} → {b:.4f} ({100 * (b / a - 1):+.1f}%)"
            row[f"{side} s (plain / mg)"] = f"{t1 - t0:.0f} / {t2 - t1:.0f}"
        rows.append(row)
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(format_table(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
