"""Stage 5: top-K recommendations per user from a trained backbone, as Parquet.

  python jobs/recommend.py data=data/synth-small-0 checkpoint=runs/backbones/lightgcn-<hash>/best.pt
  python jobs/recommend.py data=... run_id=<MLflow run of train_backbone or the best tune trial>
"""
from __future__ import annotations

import sys
from pathlib import Path

from raymmrec.config import load_config
from raymmrec.errors import exit_on_user_error
from raymmrec.recommendations import RecommendConfig, write_recommendations

DEFAULT_YAML = Path(__file__).resolve().parents[1] / "configs" / "recommend.yaml"


@exit_on_user_error
def main(argv: list[str]) -> None:
    cfg = load_config(RecommendConfig, argv, default_yaml=DEFAULT_YAML)
    out = write_recommendations(cfg)
    print(f"recommendations: {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
