"""Train one recommendation backbone: `python jobs/train_backbone.py model=lightgcn data=<dir> [key=value ...]`."""
from __future__ import annotations

import sys
from pathlib import Path

from raymmrec.config import load_config
from raymmrec.errors import exit_on_user_error
from raymmrec.recsys.train_backbone import TrainBackboneConfig, train_backbone

DEFAULT_YAML = Path(__file__).resolve().parents[1] / "configs" / "train_backbone.yaml"


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    cfg = load_config(TrainBackboneConfig, sys.argv[1:] if argv is None else argv, default_yaml=DEFAULT_YAML)
    train_backbone(cfg)


if __name__ == "__main__":
    main()
