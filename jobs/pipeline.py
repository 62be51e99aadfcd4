"""The whole pipeline: prepare → pretrain → features → tune → recommend (the README's main command).

  python jobs/pipeline.py                                   # embedded default: generated data, local Ray, local MLflow
  python jobs/pipeline.py --config configs/pipeline.yaml prepare.synth.size=baby tune.models=[lightgcn,freedom]
  python jobs/pipeline.py stages=[prepare,features,tune,recommend] features.method=clip
  python jobs/pipeline.py verbose=true                      # Ray's, Tune's and the workers' output on the terminal
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from raymmrec.config import load_config
from raymmrec.console import job_console
from raymmrec.errors import exit_on_user_error
from raymmrec.pipeline import PipelineConfig, run_pipeline

DEFAULT_YAML = Path(__file__).resolve().parents[1] / "configs" / "pipeline.yaml"


@exit_on_user_error
def main(argv: list[str]) -> None:
    cfg = load_config(PipelineConfig, argv, default_yaml=DEFAULT_YAML)
    log = Path(cfg.workdir) / "logs" / time.strftime("pipeline-%Y%m%d-%H%M%S.log")
    with job_console(log, cfg.verbose) as console:
        if not cfg.verbose:
            console.say(f"[pipeline] Ray, Tune and worker output: {log} (verbose=true shows it here)")
        run_pipeline(cfg, out=console.say, detail=console.note)


if __name__ == "__main__":
    main(sys.argv[1:])
