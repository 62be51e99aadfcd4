"""Stage 3 job: item features by Ray Data batch inference, then AlignRec's feature-quality report.

    python jobs/extract_features.py                                   # CLIP features, tiny random-init CLIP
    python jobs/extract_features.py method=cliper encoder=runs/pretrain/<run>/encoder
    python jobs/extract_features.py method=beit3 encoder=<beit3 stage-2 dir> data=<dataset dir>
    python jobs/extract_features.py method=clip encoder=ViT-L-14:openai inference.concurrency=4
"""
from __future__ import annotations

import sys
from pathlib import Path

from raymmrec.config import load_config
from raymmrec.errors import exit_on_user_error
from raymmrec.features import FeaturesConfig, extract_features

DEFAULT_YAML = Path(__file__).resolve().parents[1] / "configs" / "features.yaml"


@exit_on_user_error
def main(argv: list[str]) -> None:
    cfg = load_config(FeaturesConfig, argv, default_yaml=DEFAULT_YAML)
    result = extract_features(cfg)
    m = result.manifest
    print(f"\nfeatures:   {result.folder}  ({', '.join(f'{k} {v}' for k, v in m['dims'].items())})")
    print(f"encoder:    {m['encoder']['model']}  checkpoint {m['checkpoint_hash']}")
    print("counts:     " + ", ".join(f"{k} {v}" for k, v in m["counts"].items()))
    print(f"inference:  {m['timing']['items_per_s']} items/s end to end, "
          f"{m['timing']['steady_items_per_s']} items/s after the first batch")
    print(f"wall time:  {result.seconds:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
