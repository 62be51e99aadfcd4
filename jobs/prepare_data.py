"""Stage 1: prepare a dataset dir from the generator (default), Amazon review dumps or an MMRec folder.

  python jobs/prepare_data.py                                   # small generated dataset under data/
  python jobs/prepare_data.py source=amazon2018 reviews=R.json.gz meta=M.json.gz
  python jobs/prepare_data.py source=mmrec folder=path/to/baby export_mmrec=out/baby
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from raymmrec.config import load_config
from raymmrec.data.prepare import PrepareConfig, prepare
from raymmrec.data.stats import stats_table
from raymmrec.errors import exit_on_user_error

DEFAULT_YAML = Path(__file__).resolve().parents[1] / "configs" / "prepare.yaml"


@exit_on_user_error
def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    cfg = load_config(PrepareConfig, argv, default_yaml=DEFAULT_YAML)
    ds = prepare(cfg)
    print(f"dataset dir: {ds.root}")
    print(stats_table(ds.stats()))


if __name__ == "__main__":
    main(sys.argv[1:])
