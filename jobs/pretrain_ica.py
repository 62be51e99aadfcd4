"""Stage 2 job: pre-train BEiT3 with MLM + MIM (AlignRec's inter-content alignment) or fine-tune CLIP with ITC.

    python jobs/pretrain_ica.py                               # tiny BEiT3, 2 workers, ZeRO-3, generated data
    python jobs/pretrain_ica.py encoder=clip objective=itc    # fine-tune CLIP instead
    ray job submit --working-dir . -- python jobs/pretrain_ica.py data.source=/data/baby
"""
from __future__ import annotations

import sys
from pathlib import Path

from raymmrec.config import load_config
from raymmrec.errors import exit_on_user_error
from raymmrec.pretrain.stage import PretrainConfig, run_pretrain

DEFAULT_YAML = Path(__file__).resolve().parents[1] / "configs" / "pretrain.yaml"


@exit_on_user_error
def main(argv: list[str]) -> None:
    cfg = load_config(PretrainConfig, argv, default_yaml=DEFAULT_YAML)
    result = run_pretrain(cfg)
    keys = [k for k in ("loss", "loss_itc", "loss_mlm", "loss_mim") if any(k in r for r in result.history)]
    print("\n step  " + "  ".join(f"{k:>9}" for k in keys))
    for r in result.history[-5:]:
        print(f"{int(r['step']):>5}  " + "  ".join(f"{r[k]:9.4f}" for k in keys))
    print(f"\nencoder:            {result.encoder_dir}  (encoder.pt + encoder.json)")
    print(f"steps:              {result.steps}")
    print(f"undecodable images: {result.undecodable_images}   missing images: {result.missing_images}")
    print(f"wall time:          {result.seconds:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
