"""All five stages in one run: prepare → pretrain → features → tune → recommend.

Each stage writes to `<workdir>/<stage>-<key>/`, where the key hashes the stage's own config and the keys
of the stages it reads from; a stage whose folder holds a `_SUCCESS.json` for the same key is skipped and
its recorded outputs reused. One MLflow parent run holds the child run each stage opens.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from raymmrec import tracking
from raymmrec.config import config_hash, to_dict
from raymmrec.data.prepare import PrepareConfig, prepare
from raymmrec.data.stats import stats_table
from raymmrec.data.synth import SynthConfig
from raymmrec.errors import ConfigError
from raymmrec.features.extract import FeaturesConfig, extract_features
from raymmrec.pretrain.stage import PretrainConfig, run_pretrain
from raymmrec.recommendations import RecommendConfig, write_recommendations
from raymmrec.runtime import RayConfig
from raymmrec.tune.algorithms import check_search_config
from raymmrec.tune.search import TuneBackbonesConfig, feature_label, resolve_spaces, tune_backbones

STAGES = ("prepare", "pretrain", "features", "tune", "recommend")
SUCCESS = "_SUCCESS.json"
# Keys that say where things go or how they are watched, not what is computed: left out of stage keys.
# A stage's input path (`data`, or `data.source` of a data section) is left out too: upstream keys stand for it.
_PLACEMENT_KEYS = ("tracking", "ray", "out", "output", "storage", "storage_path", "output_dir", "run_name",
                   "progress", "name", "resume", "log_weights", "export_mmrec", "checkpoint", "placement_strategy")


def _default_features() -> FeaturesConfig:
    return FeaturesConfig(method="beit3")


def _default_tune() -> TuneBackbonesConfig:
    # The content models also train on the dataset's raw features: the leaderboard says which set serves better.
    cfg = TuneBackbonesConfig(models=["lightgcn", "vbpr", "freedom"], feature_sets=["raw"])
    cfg.trainer.epochs, cfg.trainer.batch_size, cfg.trainer.lr, cfg.trainer.patience = 12, 512, 0.01, 4
    cfg.search.algorithm, cfg.search.num_samples, cfg.search.grace_period, cfg.search.reduction_factor = "random", 4, 2, 2
    return cfg


@dataclass
class PipelineConfig:
    """The five stages' configs plus where the pipeline keeps its outputs."""

    workdir: str = "runs/pipeline"
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    force: list[str] = field(default_factory=list)        # stages to re-run even when their output exists
    verbose: bool = False      # jobs/pipeline.py: Ray, Tune and worker output on the terminal (else <workdir>/logs)
    prepare: PrepareConfig = field(default_factory=lambda: PrepareConfig(synth=SynthConfig(size="small")))
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    features: FeaturesConfig = field(default_factory=_default_features)
    tune: TuneBackbonesConfig = field(default_factory=_default_tune)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    ray: RayConfig = field(default_factory=lambda: RayConfig(num_cpus=None))
    tracking: tracking.TrackingConfig = field(default_factory=tracking.TrackingConfig)


@dataclass
class StageRecord:
    """One stage's outcome: ran or reused, its folder, seconds and what later stages read."""

    stage: str
    key: str
    folder: Path
    status: str            # ran | skipped
    seconds: float
    outputs: dict[str, Any]


def _compute_part(section: Any) -> dict:
    d = to_dict(section)
    for k in _PLACEMENT_KEYS:
        d.pop(k, None)
    # a `data` path is the upstream output; a `data` *section* (pre-training's batch size, text fields,
    # augmentation, mask seed) changes what the stage computes and stays, less its `source` path
    if isinstance(d.get("data"), dict):
        d["data"] = {k: v for k, v in d["data"].items() if k != "source"}
    else:
        d.pop("data", None)
    return d


def stage_key(cfg: PipelineConfig, stage: str, upstream: list[str]) -> str:
    """Content hash of what `stage` computes: its config (placement keys left out) and its inputs' keys."""
    return config_hash({"stage": stage, "config": _compute_part(getattr(cfg, stage)), "upstream": upstream})


def _check(cfg: PipelineConfig) -> None:
    for name in list(cfg.stages) + list(cfg.force):
        if name not in STAGES:
            raise ConfigError(f"pipeline: unknown stage '{name}' (stages: {', '.join(STAGES)})")
    needs = {"pretrain": "prepare", "features": "prepare", "tune": "prepare", "recommend": "tune"}
    for stage in cfg.stages:
        dep = needs.get(stage)
        if dep and dep not in cfg.stages:
            raise ConfigError(f"pipeline: stage '{stage}' needs stage '{dep}' in `stages`")
    if "tune" in cfg.stages:
        # model names, spaces and search settings fail here, before a dataset is prepared
        check_search_config(cfg.tune.search, cfg.tune.trainer.epochs)
        resolve_spaces(cfg.tune)


class Pipeline:
    """Runs the configured stages in order, reusing finished ones."""

    def __init__(self, cfg: PipelineConfig, out: Callable[[str], None] = print,
                 detail: Callable[[str], None] | None = None) -> None:
        _check(cfg)
        self.cfg, self.out = cfg, out
        self.detail = detail or out       # the stages' own lines
        self.records: dict[str, StageRecord] = {}
        self.workdir = Path(cfg.workdir)

    def _stage(self, stage: str, upstream: list[str], run: Callable[[Path], dict[str, Any]]) -> StageRecord:
        keys = [self.records[u].key for u in upstream if u in self.records]
        key = stage_key(self.cfg, stage, keys)
        folder = (self.workdir / f"{stage}-{key}").resolve()
        marker = folder / SUCCESS
        if marker.is_file() and stage not in self.cfg.force:
            rec = StageRecord(stage, key, folder, "skipped", 0.0, json.loads(marker.read_text()))
            self.out(f"[pipeline] {stage}: output for this config exists in {folder}; skipped")
        else:
            self.out(f"[pipeline] {stage}: running → {folder}")
            folder.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            outputs = run(folder)   # each stage opens its own MLflow run, nested under the pipeline's
            rec = StageRecord(stage, key, folder, "ran", time.perf_counter() - t0, outputs)
            marker.write_text(json.dumps(outputs, indent=1, default=str))
            self.out(f"[pipeline] {stage}: done in {rec.seconds:.0f}s")
        self.records[stage] = rec
        return rec

    def _sub(self, section: Any) -> Any:
        sub = copy.deepcopy(section)
        if hasattr(sub, "tracking"):
            sub.tracking = self.cfg.tracking
        if hasattr(sub, "ray"):
            sub.ray = self.cfg.ray
        return sub

    def run(self) -> dict[str, StageRecord]:
        """Run every configured stage under one MLflow parent run; returns the stage records."""
        cfg = self.cfg
        with tracking.job_run(cfg.tracking, "pipeline", {"workdir": cfg.workdir, "stages": cfg.stages},
                              tags={"stage": "pipeline"}):
            tracking.log_dict(to_dict(cfg), "pipeline_config.json")
            if "prepare" in cfg.stages:
                self._stage("prepare", [], self._prepare)
            if "pretrain" in cfg.stages:
                self._stage("pretrain", ["prepare"], self._pretrain)
            if "features" in cfg.stages:
                self._stage("features", ["prepare", "pretrain"], self._features)
            if "tune" in cfg.stages:
                self._stage("tune", ["prepare", "features"], self._tune)
            if "recommend" in cfg.stages:
                self._stage("recommend", ["tune"], self._recommend)
            tracking.log_table([{"stage": r.stage, "status": r.status, "seconds": round(r.seconds, 1),
                                 "folder": str(r.folder)} for r in self.records.values()], "stages.json")
        return self.records

    # ---------------------------------------------------------------- stages
    def _prepare(self, folder: Path) -> dict[str, Any]:
        sub = replace(self._sub(self.cfg.prepare), out=str(folder / "dataset"))
        ds = prepare(sub)
        return {"dataset_dir": str(ds.root.resolve()), "stats": ds.stats()}

    def _pretrain(self, folder: Path) -> dict[str, Any]:
        sub = self._sub(self.cfg.pretrain)
        sub.data.source = self.records["prepare"].outputs["dataset_dir"]
        sub.storage_path, sub.run_name, sub.output_dir = str(folder / "train"), "pretrain", str(folder / "encoder")
        res = run_pretrain(sub)
        final = {k: v for k, v in res.metrics.items() if isinstance(v, (int, float))}
        return {"encoder_dir": str(Path(res.encoder_dir).resolve()), "steps": res.steps, "metrics": final}

    def _features(self, folder: Path) -> dict[str, Any]:
        sub = self._sub(self.cfg.features)
        sub.data = self.records["prepare"].outputs["dataset_dir"]
        if "pretrain" in self.records and not sub.encoder:
            sub.encoder = self.records["pretrain"].outputs["encoder_dir"]
        sub.name = f"{sub.method}-{self.records_key('features', folder)}"
        sub.output = str(folder / sub.name)       # the stage's own folder: the prepared dataset dir stays as it was
        res = extract_features(sub, self.detail)
        return {"feature_set": str(res.folder), "name": res.name, "folder": str(res.folder), "quality": res.quality,
                "manifest": res.manifest}

    def records_key(self, stage: str, folder: Path) -> str:
        """The key part of a stage folder's name."""
        return folder.name.split("-", 1)[1]

    def _tune(self, folder: Path) -> dict[str, Any]:
        sub = self._sub(self.cfg.tune)
        sub.data = self.records["prepare"].outputs["dataset_dir"]
        if "features" in self.records:
            sub.features = self.records["features"].outputs["feature_set"]
        sub.feature_sets = [f for f in sub.feature_sets if feature_label(f) != feature_label(sub.features)]
        sub.output, sub.name = str(folder), "search"
        res = tune_backbones(sub, out=self.detail)
        best = res.best_model
        if best is None or best.model not in res.best_checkpoints:
            raise ConfigError("pipeline: the tune stage finished without a best checkpoint (no trial completed)")
        from raymmrec.tune.leaderboard import leaderboard_text

        return {"features": res.features_of(best, sub.features), "best_model": best.model,
                "best_checkpoint": res.best_checkpoints[best.model],
                "leaderboard": leaderboard_text(res.trials, sub.trainer.topk), "trials": len(res.trials),
                "trial_epochs": res.trial_epochs}

    def _recommend(self, folder: Path) -> dict[str, Any]:
        tuned = self.records["tune"].outputs
        sub = replace(self._sub(self.cfg.recommend), data=self.records["prepare"].outputs["dataset_dir"],
                      features=tuned["features"], checkpoint=tuned["best_checkpoint"], run_id="",
                      output=str(folder / "recommendations"))
        path = write_recommendations(sub, self.detail)
        return {"recommendations": str(path.resolve()), "model": tuned["best_model"]}


def summary_text(records: dict[str, StageRecord]) -> str:
    """What a person reads at the end: stage table, dataset, pre-training, feature quality, leaderboard, outputs."""
    lines = ["", "=" * 78, "raymmrec pipeline summary", "=" * 78,
             f"{'stage':<10} {'status':<8} {'seconds':>8}  output"]
    for r in records.values():
        lines.append(f"{r.stage:<10} {r.status:<8} {r.seconds:>8.1f}  {r.folder}")
    if "prepare" in records:
        lines += ["", "dataset: " + records["prepare"].outputs["dataset_dir"], stats_table(records["prepare"].outputs["stats"])]
    if "pretrain" in records:
        o = records["pretrain"].outputs
        loss = {k: round(v, 4) for k, v in o["metrics"].items() if "loss" in k}
        lines += ["", f"pre-training: {o['steps']} steps, final {loss}; encoder {o['encoder_dir']}"]
    if "features" in records:
        o = records["features"].outputs
        lines += ["", f"features '{o.get('name', o['feature_set'])}' in {o['folder']}; quality (Recall@K):"]
        lines += [f"  {k:<40} {v:.4f}" for k, v in sorted(o["quality"].items()) if isinstance(v, (int, float))]
    if "tune" in records:
        o = records["tune"].outputs
        lines += ["", f"leaderboard ({o['trials']} trials, {o['trial_epochs']} trial-epochs):", o["leaderboard"]]
    if "recommend" in records:
        o = records["recommend"].outputs
        lines += ["", f"recommendations ({o['model']}): {o['recommendations']}"]
    return "\n".join(lines)


def run_pipeline(cfg: PipelineConfig, out: Callable[[str], None] = print,
                 detail: Callable[[str], None] | None = None) -> dict[str, StageRecord]:
    """Run the pipeline and print its summary (`detail`: where the stages' own lines go; default `out`)."""
    t0 = time.perf_counter()
    records = Pipeline(cfg, out, detail).run()
    out(summary_text(records))
    out(f"\npipeline wall time: {time.perf_counter() - t0:.0f}s")
    return records
