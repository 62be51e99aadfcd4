"""Train one backbone on a dataset dir or MMRec folder, resumably, with everything logged to MLflow."""
from __future__ import annotations

import dataclasses
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from raymmrec import tracking
from raymmrec.config import config_hash, to_dict
from raymmrec.errors import ConfigError
from raymmrec.recsys.end_to_end import EndToEndConfig, check_end_to_end, end_to_end_setup
from raymmrec.recsys.end_to_end_ray import train_end_to_end_ray
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.registry import get_model
from raymmrec.recsys.report import epoch_line, learning_curve, metric_rows, result_table
from raymmrec.recsys.recommender import Recommender
from raymmrec.recsys.trainer import (TrainerConfig, TrainResult, check_trainer_config, load_trained_model, run_hash,
                                     train_model, with_model_defaults)
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
    """The configured dataset, generating the synthetic one under <output>/data the first time."""
    path = Path(cfg.data) if cfg.data else Path(cfg.output) / "data" / f"synth-{cfg.synth_size}-{cfg.synth_seed}"
    if not cfg.data and not (path / "stats.json").is_file():
        from raymmrec.data.synth import SynthConfig, generate_dataset

        out(f"generating the synthetic '{cfg.synth_size}' dataset at {path}")
        if path.exists():
            shutil.rmtree(path)
        generate_dataset(SynthConfig(size=cfg.synth_size, seed=cfg.synth_seed), path)
    return InteractionData.load(path, None if cfg.paradigm == "ete" else cfg.features or None)


def check_config(cfg: TrainBackboneConfig) -> None:
    """Every name and parameter checked before any work (no dataset is generated for a misspelt model)."""
    spec = get_model(cfg.model)
    spec.make_config(cfg.params)
    check_trainer_config(with_model_defaults(spec.model_cls, cfg.trainer))
    if cfg.paradigm == "ete" and spec.model_cls.set_item_features is Recommender.set_item_features:
        raise ConfigError(f"model '{spec.name}' does not support paradigm=ete (it has no set_item_features)")


def train_backbone(cfg: TrainBackboneConfig, out: Callable[[str], None] = print) -> TrainResult:
    """Load data, train `cfg.model` with per-epoch progress and MLflow logging, print the final table."""
    check_config(cfg)
    data = load_training_data(cfg, out)
    spec = get_model(cfg.model)
    model_cfg = spec.make_config(cfg.params)
    wrap_model, h = None, ""
    ete = cfg.paradigm == "ete"
    on_ray = ete and cfg.end_to_end.num_workers >= 1
    if on_ray:
        # the workers encode the items; the driver only needs the run's identity
        check_end_to_end(data, spec.model_cls)
        data = dataclasses.replace(data, feature_set="ete")
    elif ete:
        out(f"end-to-end: preprocessing {data.n_items} items and encoding them with the initial encoder")
        data, wrap_model = end_to_end_setup(cfg.end_to_end, data, spec.model_cls)
    if ete:
        h = "-ete" + config_hash(cfg.end_to_end.identity())[:8]
    if not on_ray:
        spec.model_cls.check_data(model_cfg, data)
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
              "paradigm": cfg.paradigm, **({"end_to_end": to_dict(cfg.end_to_end)} if ete else {})}
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

        if on_ray:
            result = train_end_to_end_ray(spec.name, model_cfg, cfg.trainer, cfg.end_to_end, data.source, ckpt_dir,
                                          cfg.resume, cfg.ray, tracking.active_run_id(),
                                          tracking.resolve_uri(cfg.tracking) if run is not None else None, out)
        else:
            result = train_model(spec.name, model_cfg, cfg.trainer, data, report=report,
                                 checkpoint_dir=ckpt_dir, resume=cfg.resume, wrap_model=wrap_model)
        if ete and result.best_checkpoint:
            publish_outputs(cfg.end_to_end, result, data, on_ray, out)
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


def publish_outputs(cfg: EndToEndConfig, result: TrainResult, data: InteractionData, on_ray: bool,
                    out: Callable[[str], None]) -> None:
    """The best encoder's features as features/ete-<hash> and its weights as <checkpoint dir>/encoder."""
    from raymmrec.recsys.end_to_end_outputs import best_encoder, publish_end_to_end

    if on_ray:
        encoder, inputs = best_encoder(cfg, result.best_checkpoint, data.n_items, data.source)
    else:
        encoder, inputs = result.model.encoder, result.model.inputs
    name, encoder_dir = publish_end_to_end(cfg, result.best_checkpoint, encoder, inputs, data.source)
    if on_ray:
        result.model = load_trained_model(result.best_checkpoint, InteractionData.load(data.source, name))
    out(f"end-to-end outputs: feature set '{name}' in {data.source}/features/{name}, encoder {encoder_dir}")
    tracking.set_tags({"feature_set": name})
    tracking.log_artifact(Path(encoder_dir) / "encoder.json", "encoder")
