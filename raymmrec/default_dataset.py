"""The embedded default input of every job: the seeded generated dataset dir, made on first use and then reused."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from raymmrec.data.schema import STATS_FILE


def default_dataset_dir(root: str | Path, size: str, seed: int, out: Callable[[str], None] = print) -> Path:
    """`<root>/data/synth-<size>-seed<seed>`, generated there unless a finished one (stats.json) exists."""
    path = Path(root) / "data" / f"synth-{size}-seed{seed}"
    if not (path / STATS_FILE).is_file():
        from raymmrec.data.synth import SynthConfig, generate_dataset

        out(f"generating the synthetic '{size}' dataset in {path}")
        if path.exists():      # an interrupted generation: start it over
            shutil.rmtree(path)
        generate_dataset(SynthConfig(size=size, seed=seed), path)
    return path
