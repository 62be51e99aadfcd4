"""Train one backbone on a dataset dir or MMRec folder, resumably, with everything logged to MLflow."""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from raymmrec import tracking
from raymmrec.config import to_dict
from raymmrec.default_dataset import default_dataset_dir
from raymmrec.errors import ConfigError
from raymmrec.recsys.end_to_end import EndToEndConfig
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.paradigms import paradigm_for
from raymmrec.recsys.backbone import Backbone
from raymmrec.recsys.registry import get_model
from raymmrec.recsys.report import epoch_line, learning_curve, metric_rows, result_table
from raymmrec.recsys.trainer import TrainerConfig, TrainResult, check_trainer_config, run_hash, with_model_defaults
from raymmrec.runtime import RayConfig

RUN_ID_FILE = "mlflow_run_id"


@dataclass
class TrainBackboneConfig:
    """One backbone training job."""

    model: str = "lightgcn"
    data: str = ""                       # dataset dir or MMRec folder; empty: the generated synthetic set
    features: str = "raw"                # feature set of a dataset dir ("" for none)
    params: dict[str, Any] = field(default_factory=dict)   # model hyper-parameters over its defaults
    # pt / ft: fixed features from `features` (ft: a set extracted by a stage-2 fine-tuned encoder);
    # ete: the encoder of `end_to_end` trained jointly with the backbone (seed 002's end-to-end paradigm)
    paradigm: Literal["pt", "ft", "ete"] = "pt"
    end_to_end: EndToEndConfig = field(default_factory=EndToEndConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    output: str = "runs/backbones"       # checkpoints under <output>/<model>-<run hash>/
    resume: bool = True                  # continue from that dir's last.pt when it exists
    synth_size: str = "tiny"             # generated set when `data` is empty
    synth_seed: int = 0
    tracking: tracking.TrackingConfig = field(default_factory=tracking.TrackingConfig)
    ray: RayConfig = field(default_factory=RayConfig)    # paradigm=ete with end_to_end.num_workers >= 1


def load_training_data(cfg: TrainBackboneConfig, out: Callable[[str], None] = print) -> InteractionData:
    """The configured dataset, else the generated one (made under <output>/data the first time)."""
    path = cfg.data or default_dataset_dir(cfg.output, cfg.synth_size, cfg.synth_seed, out)
    return InteractionData.load(path, None if cfg.paradigm == "ete" else cfg.features or None)


def check_config(cfg: TrainBackboneConfig) -> None:
    """Every name and parameter checked before any work (no dataset is generated for a misspelt model)."""
    spec = get_model(cfg.model)
    spec.make_config(cfg.params)
    check_trainer_config(with_model_defaults(spec.model_cls, cfg.trainer))
    if cfg.paradigm == "ete" and spec.model_cls.set_item_features is Backbone.set_item_features:
        raise ConfigError(f"model '{spec.name}' does not support paradigm=ete (it has no set_item_features)")


def train_backbone(cfg: TrainBackboneConfig, out: Callable[[str], None] = print) -> TrainResult:
    """Load data, train `cfg.model` with per-epoch progress and MLflow logging, print the final table."""
    check_config(cfg)
    data = load_training_data(cfg, out)
    spec = get_model(cfg.model)
    model_cfg = spec.make_config(cfg.params)
    paradigm = paradigm_for(cfg.paradigm, cfg.end_to_end, cfg.ray, cfg.tracking)
    data = paradigm.prepare(data, spec.model_cls, model_cfg, out)
    h = paradigm.run_suffix()
    ckpt_dir = Path(cfg.output) / f"{spec.name}-{run_hash(spec.name, model_cfg, cfg.trainer, data)}{h}"
    if not cfg.resume and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    run_id_file = ckpt_dir / RUN_ID_FILE
    resume_run = run_id_file.read_text().strip() if cfg.resume and run_id_file.is_file() else None
    if resume_run:
        out(f"resuming from {ckpt_dir}")
    s = data.summary()
    out(f"data {s['name']}: {s['n_users']} users, {s['n_items']} items, {s['n_train']}/{s['n_valid']}/{s['n_test']} "
        f"train/valid/test, {s['cold_items']} cold items, features {s['features'] or 'none'}")
    params = {"model": spec.name, "model_config": to_dict(model_cfg), "trainer": to_dict(cfg.trainer),
              "data": {"path": cfg.data or f"synth:{cfg.synth_size}", "features": cfg.features},
              "paradigm": cfg.paradigm, **({"end_to_end": to_dict(cfg.end_to_end)} if cfg.paradigm == "ete" else {})}
    with tracking.job_run(cfg.tracking, f"train_backbone:{spec.name}", None if resume_run else params,
                          tags={"stage": "backbone", "model": spec.name}, resume_run_id=resume_run) as run:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        if run is not None:
            run_id_file.write_text(run.info.run_id)
            if not resume_run:
                tracking.log_dict(s, "data_summary.json")

        def report(record: dict[str, Any]) -> None:
            out(epoch_line(record, cfg.trainer.valid_metric))
            tracking.log_metrics({k: v for k, v in record.items() if not k.startswith("best/")}, step=record["epoch"])

        result = paradigm.train(spec.name, model_cfg, cfg.trainer, data, ckpt_dir, cfg.resume, report,
                                run is not None, out)
        paradigm.publish(result, data, out)
        out(result_table(result, cfg.trainer.topk))
        tracking.log_metrics({f"best_{k}": v for k, v in result.best_valid.items()})
        tracking.log_metrics({f"test_at_best_{k}": v for k, v in result.test_at_best.items()})
        tracking.log_metrics({"best_epoch": result.best_epoch, "epochs_run": result.epochs_run})
        tracking.log_table(metric_rows(result, cfg.trainer.topk), "metrics_at_best_epoch.json")
        tracking.log_dict(result.summary(), "result.json")
        if run is not None:
            tracking.set_tags({"stop_reason": result.stop_reason})
            if result.history:
                tracking.log_figure(learning_curve(result.history, cfg.trainer.valid_metric), "learning_curve.png")
            if result.best_checkpoint:
                tracking.log_artifact(result.best_checkpoint, "checkpoint")
    sys.stdout.flush()
    return result
