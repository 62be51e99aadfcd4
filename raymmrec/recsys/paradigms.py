"""How a backbone is trained, as objects with one interface: fixed features (pt / ft), end to end in this process,
and end to end as a Ray Train job. train_backbone picks one and calls the same four methods on any of them."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from raymmrec import tracking
from raymmrec.config import config_hash
from raymmrec.recsys.end_to_end import EndToEndConfig, check_end_to_end, end_to_end_setup
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.trainer import TrainerConfig, TrainResult, load_trained_model, train_model
from raymmrec.runtime import RayConfig

Out = Callable[[str], None]
ReportFn = Callable[[dict[str, Any]], Any]


class FixedFeatures:
    """pt / ft: the backbone alone, on the feature set the data was loaded with."""

    name = "pt"

    def prepare(self, data: InteractionData, model_cls: type[Backbone], model_cfg: ModelConfig,
                out: Out) -> InteractionData:
        """The data the run trains on (checked for the model)."""
        model_cls.check_data(model_cfg, data)
        return data

    def run_suffix(self) -> str:
        """What this paradigm adds to the checkpoint dir's name."""
        return ""

    def train(self, model_name: str, model_cfg: ModelConfig, trainer: TrainerConfig, data: InteractionData,
              checkpoint_dir: Path, resume: bool, report: ReportFn, run_active: bool, out: Out) -> TrainResult:
        """Train and return the result, its model holding the best weights."""
        return train_model(model_name, model_cfg, trainer, data, report=report, checkpoint_dir=checkpoint_dir,
                           resume=resume)

    def publish(self, result: TrainResult, data: InteractionData, out: Out) -> None:
        """Write what the run leaves for later stages besides its checkpoint (nothing here)."""


class EndToEndLocal(FixedFeatures):
    """ete: the encoder trained jointly with the backbone in this process (seed 002's ETE)."""

    name = "ete"

    def __init__(self, cfg: EndToEndConfig) -> None:
        self.cfg = cfg
        self.wrap_model: Callable[[Backbone], Backbone] | None = None

    def prepare(self, data, model_cls, model_cfg, out):
        out(f"end-to-end: preprocessing {data.n_items} items and encoding them with the initial encoder")
        data, self.wrap_model = end_to_end_setup(self.cfg, data, model_cls)
        model_cls.check_data(model_cfg, data)
        return data

    def run_suffix(self) -> str:
        return "-ete" + config_hash(self.cfg.identity())[:8]

    def train(self, model_name, model_cfg, trainer, data, checkpoint_dir, resume, report, run_active, out):
        return train_model(model_name, model_cfg, trainer, data, report=report, checkpoint_dir=checkpoint_dir,
                           resume=resume, wrap_model=self.wrap_model)

    def publish(self, result, data, out):
        if result.best_checkpoint:
            self._publish(result, data, result.model.encoder, result.model.inputs, out)

    def _publish(self, result: TrainResult, data: InteractionData, encoder: Any, inputs: Any, out: Out) -> str:
        """The best encoder's features as <checkpoint dir>/ete-<hash> and its weights as <checkpoint dir>/encoder."""
        from raymmrec.recsys.end_to_end_outputs import publish_end_to_end

        feature_set, encoder_dir = publish_end_to_end(self.cfg, result.best_checkpoint, encoder, inputs, data.source)
        out(f"end-to-end outputs: feature set {feature_set}, encoder {encoder_dir}")
        tracking.set_tags({"feature_set": feature_set})
        tracking.log_artifact(Path(encoder_dir) / "encoder.json", "encoder")
        return feature_set


class EndToEndOnRay(EndToEndLocal):
    """ete with end_to_end.num_workers >= 1: a Ray Train job, each worker a shard of every batch."""

    def __init__(self, cfg: EndToEndConfig, ray: RayConfig, tracking_cfg: tracking.TrackingConfig) -> None:
        super().__init__(cfg)
        self.ray, self.tracking_cfg = ray, tracking_cfg

    def prepare(self, data, model_cls, model_cfg, out):
        # the workers encode the items; the driver only needs the run's identity
        check_end_to_end(data, model_cls)
        return dataclasses.replace(data, feature_set="ete")

    def train(self, model_name, model_cfg, trainer, data, checkpoint_dir, resume, report, run_active, out):
        from raymmrec.recsys.end_to_end_ray import train_end_to_end_ray

        return train_end_to_end_ray(model_name, model_cfg, trainer, self.cfg, data.source, checkpoint_dir, resume,
                                    self.ray, tracking.active_run_id(),
                                    tracking.resolve_uri(self.tracking_cfg) if run_active else None, out)

    def publish(self, result, data, out):
        from raymmrec.recsys.end_to_end_outputs import best_encoder

        if not result.best_checkpoint:
            return
        encoder, inputs = best_encoder(self.cfg, result.best_checkpoint, data.n_items, data.source)
        feature_set = self._publish(result, data, encoder, inputs, out)
        result.model = load_trained_model(result.best_checkpoint, InteractionData.load(data.source, feature_set))


def paradigm_for(paradigm: str, cfg: EndToEndConfig, ray: RayConfig,
                 tracking_cfg: tracking.TrackingConfig) -> FixedFeatures:
    """The training paradigm object of a TrainBackboneConfig's `paradigm` and `end_to_end` settings."""
    if paradigm != "ete":
        return FixedFeatures()
    return EndToEndOnRay(cfg, ray, tracking_cfg) if cfg.num_workers >= 1 else EndToEndLocal(cfg)
