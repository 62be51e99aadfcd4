"""Tune backbones with Ray Tune + ASHA: `python jobs/tune_backbones.py [models=[bpr,lightgcn]] [key=value ...]`."""
from __future__ import annotations

import sys
from pathlib import Path

from raymmrec.config import load_config
from raymmrec.errors import exit_on_user_error
from raymmrec.tune.search import TuneBackbonesConfig, tune_backbones

DEFAULT_YAML = Path(__file__).resolve().parents[1] / "configs" / "tune.yaml"


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    cfg = load_config(TuneBackbonesConfig, sys.argv[1:] if argv is None else argv, default_yaml=DEFAULT_YAML)
    result = tune_backbones(cfg)
    if not result.complete:
        raise SystemExit(130)


if __name__ == "__main__":
    main()
