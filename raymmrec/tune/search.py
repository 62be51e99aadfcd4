"""Tune backbones: one Ray Tune search (ASHA) per model over its search space, logged to MLflow, ending in a leaderboard.

One Tuner per model, not one Tuner with a `model` dimension: ASHA's rungs then compare configs of the
same model only (a slow-starting model such as LightGCN is not cut by BPR's early epochs), each
searcher sees a flat space (Optuna / HyperOpt need no conditional spaces), the leaderboard's "best
config per model" is each Tuner's best trial, and a restore resumes model by model.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from raymmrec import tracking
from raymmrec.config import config_hash, to_dict
from raymmrec.default_dataset import default_dataset_dir
from raymmrec.errors import ConfigError
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.registry import get_model
from raymmrec.recsys.trainer import TrainerConfig
from raymmrec.runtime import RayConfig, init_ray
from raymmrec.tune import storage
from raymmrec.tune.algorithms import SearchConfig, check_search_config, make_scheduler, make_search_alg
from raymmrec.tune.leaderboard import (TrialRow, best_per_model, curves_figure, leaderboard_rows,
                                       leaderboard_text, trial_rows, trials_table)
from raymmrec.tune.space import (FEATURES_KEY, Space, distinct_draws, expected_trials, model_space, split_params,
                                 tune_space)
from raymmrec.tune.trial import run_trial, search_metric
from raymmrec.tune.trial_runs import TrialRuns


@dataclass
class TuneBackbonesConfig:
    """A search over several backbones; each model's space is its config's unless `spaces` gives one."""

    models: list[str] = field(default_factory=lambda: ["bpr", "lightgcn", "vbpr"])
    spaces: dict[str, dict[str, Any]] = field(default_factory=dict)   # model → {field: {kind: values}}
    params: dict[str, dict[str, Any]] = field(default_factory=dict)   # model → fixed hyper-parameters
    search: SearchConfig = field(default_factory=SearchConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)     # trainer.epochs = max epochs of a trial
    data: str = ""                       # dataset dir or MMRec folder; empty: the generated synthetic set
    features: str = "raw"
    # More feature sets (names in the dataset dir or folders): every model that reads content is searched on
    # each of them and on `features` with the same draws, the set being the trial's `features` key.
    feature_sets: list[str] = field(default_factory=list)
    synth_size: str = "tiny"
    synth_seed: int = 0
    name: str = "tune_backbones"         # the search's name: Tune experiments under <storage>/<name>/<model>
    output: str = "runs/tune"            # local results: leaderboard, plot, best checkpoints
    storage: str = ""                    # Ray Tune storage: shared path or URI (s3://...); empty: <output>/experiments
    resume: bool = True                  # continue an interrupted search of the same name and config
    ray: RayConfig = field(default_factory=RayConfig)
    tracking: tracking.TrackingConfig = field(default_factory=tracking.TrackingConfig)


@dataclass
class SearchResult:
    """Every trial of the search and each model's best (config, metrics, local best.pt)."""

    name: str
    trials: list[TrialRow]
    best: dict[str, TrialRow]              # model → best trial, best model first
    best_checkpoints: dict[str, str]       # model → local path of its best trial's best.pt
    complete: bool                         # False when interrupted: rerun with resume=true to finish
    expected_trials: dict[str, int]
    seconds: float
    run_id: str | None = None
    experiment_paths: dict[str, str] = field(default_factory=dict)
    feature_sets: dict[str, str] = field(default_factory=dict)   # a trial's `features` label → the set it read

    def features_of(self, row: TrialRow, default: str) -> str:
        """The feature set a trial trained on (`default` for a search over one set)."""
        return self.feature_sets.get(row.config.get(FEATURES_KEY, ""), default)

    @property
    def best_model(self) -> TrialRow | None:
        """The best trial over all models."""
        return next(iter(self.best.values()), None)

    @property
    def trial_epochs(self) -> int:
        """Epochs trained over all trials: the search's cost."""
        return sum(r.epochs for r in self.trials)


def resolve_spaces(cfg: TuneBackbonesConfig) -> dict[str, Space]:
    """Each model's checked search space, in `cfg.models` order; unknown models and keys fail here."""
    names = [get_model(m).name for m in cfg.models]
    if not names:
        raise ConfigError("models: give at least one model to tune")
    for section in ("spaces", "params"):
        for key in getattr(cfg, section):
            if get_model(key).name not in names:
                raise ConfigError(f"{section}.{key}: model '{key}' is not in models ({', '.join(names)})")
    lower = lambda d: {get_model(k).name: v for k, v in d.items()}  # noqa: E731
    spaces, params = lower(cfg.spaces), lower(cfg.params)
    return {m: model_space(m, spaces.get(m), params.get(m, {})) for m in names}


def tune_backbones(cfg: TuneBackbonesConfig, data: InteractionData | None = None, callbacks: Sequence[Any] = (),
                   out: Callable[[str], None] = print) -> SearchResult:
    """Run (or resume) the search of every model in `cfg.models`, print and log the leaderboard.

    `data` skips loading `cfg.data`; `callbacks` (ray.tune.Callback) join a new search; a restored search
    keeps the callbacks it was started with (Tune stores them with the experiment).
    """
    started = time.perf_counter()
    check_search_config(cfg.search, cfg.trainer.epochs)
    spaces = resolve_spaces(cfg)
    fixed = {get_model(k).name: dict(v) for k, v in cfg.params.items()}
    if data is None:
        path = cfg.data or default_dataset_dir(cfg.output, cfg.synth_size, cfg.synth_seed, out)
        data = InteractionData.load(path, cfg.features or None)
    else:
        path = cfg.data or data.source
    sets = load_feature_sets(cfg, path, data)
    searched = {m: list(sets) if get_model(m).model_cls.needs_features else [next(iter(sets))] for m in spaces}
    for model in spaces:
        # Building each model once here checks the data before any trial, and fills what the data object
        # carries to every trial (FREEDOM's kNN graph) before its one trip to the object store.
        for label in searched[model]:
            get_model(model).build(split_params(fixed.get(model, {}))[0], sets[label])
    root = storage.experiment_root(cfg.storage or str(Path(cfg.output) / "experiments"), cfg.name)
    paths = {m: f"{root}/{m}" for m in spaces}
    restore = {m: _restorable(cfg, paths[m], _search_ident(cfg, m, spaces[m], fixed.get(m, {}), data, searched[m]))
               for m in spaces}
    expected = {m: expected_trials(sp, cfg.search.algorithm, cfg.search.num_samples) * _set_factor(cfg, searched[m])
                for m, sp in spaces.items()}
    init_ray(cfg.ray)
    refs = {label: d.put() for label, d in sets.items()}
    parent_tags = {"stage": "tune", "tune_experiment": root}
    parent = tracking.find_run_id(cfg.tracking, parent_tags) if any(restore.values()) else None
    s = data.summary()
    out(f"data {s['name']}: {s['n_users']} users, {s['n_items']} items, {s['n_train']} train interactions; searching "
        + ", ".join(f"{m} ({n} trials)" for m, n in expected.items())
        + f" with {cfg.search.algorithm} + {cfg.search.scheduler}, up to {cfg.trainer.epochs} epochs a trial; "
        f"Tune storage {root}")
    rows: list[TrialRow] = []
    complete = True
    with tracking.job_run(cfg.tracking, f"tune:{cfg.name}", None if parent else _parent_params(cfg, spaces, s),
                          tags=parent_tags, resume_run_id=parent) as run:
        for model, space in spaces.items():
            if restore[model]:
                out(f"{model}: resuming the search at {paths[model]}")
            labels = searched[model]
            data_ref = refs[labels[0]] if len(labels) == 1 else {label: refs[label] for label in labels}
            grid = _search_model(cfg, model, space, fixed.get(model, {}), data_ref, paths[model], restore[model],
                                 callbacks, expected[model], labels)
            rows += trial_rows(model, grid, cfg.trainer.valid_metric)
            ended = grid.num_terminated + grid.num_errors
            if ended < max(len(grid), expected[model]):
                complete = False
                out(f"{model}: search interrupted after {ended} of {expected[model]} trials; "
                    f"run the same command again to resume it")
                break
        result = SearchResult(name=cfg.name, trials=rows, best=best_per_model(rows), best_checkpoints={},
                              complete=complete, expected_trials=expected, seconds=time.perf_counter() - started,
                              run_id=run.info.run_id if run is not None else None, experiment_paths=paths,
                              feature_sets=feature_set_refs(cfg) if len(sets) > 1 else {})
        _finish(cfg, result, out)
    return result


def feature_label(ref: str) -> str:
    """A feature set's short name in trial configs: its folder's name for a path, else the name itself."""
    return Path(ref).name if os.sep in ref else ref


def feature_set_refs(cfg: TuneBackbonesConfig) -> dict[str, str]:
    """Every searched feature set, label → name or folder, `cfg.features` first; a set given twice is refused."""
    refs = {feature_label(cfg.features or "none"): cfg.features}
    for ref in cfg.feature_sets:
        label = feature_label(ref)
        if label in refs:
            raise ConfigError(f"feature_sets: '{ref}' is already searched as feature set '{label}'")
        refs[label] = ref
    return refs


def load_feature_sets(cfg: TuneBackbonesConfig, path: str, data: InteractionData) -> dict[str, InteractionData]:
    """The searched feature sets by label, `cfg.features` (already loaded as `data`) first."""
    labels = iter(feature_set_refs(cfg).items())
    sets = {next(labels)[0]: data}
    for label, ref in labels:
        other = InteractionData.load(path, ref)
        if other.feature_set in (None, "mmrec"):
            raise ConfigError(f"feature_sets: '{path}' is an MMRec folder, which holds one feature set; "
                              f"compare feature sets on a dataset dir")
        sets[label] = other
    return sets


def _set_factor(cfg: TuneBackbonesConfig, labels: list[str]) -> int:
    """Trials per drawn config: one per feature set, except where a model-based searcher picks the set."""
    return 1 if cfg.search.algorithm in ("optuna", "hyperopt") else len(labels)


def _restorable(cfg: TuneBackbonesConfig, path: str, ident: dict) -> bool:
    """Whether a model's search resumes from `path`; a fresh one clears it and records what it is."""
    from ray import tune

    marker = f"{path}.search.json"
    if cfg.resume and tune.Tuner.can_restore(path):
        saved = storage.read_json(marker)
        if saved is not None and config_hash(saved) != config_hash(ident):
            raise ConfigError(f"search '{cfg.name}' at {path} was started with another configuration for "
                              f"'{ident['model']}'; use another name, or resume=false to start it over")
        return True
    storage.remove(path)
    storage.write_json(marker, ident)
    return False


def _search_ident(cfg: TuneBackbonesConfig, model: str, space: Space, fixed: dict, data: InteractionData,
                  labels: list[str]) -> dict:
    """What a model's search is: a resumed search must match it."""
    search = to_dict(cfg.search)
    for k in ("max_concurrent_trials", "report_every_s", "cpus_per_trial", "gpus_per_trial", "reuse_actors"):
        search.pop(k)
    trainer = to_dict(cfg.trainer)
    for k in ("device", "num_threads", "eval_batch_size"):
        trainer.pop(k)
    return {"model": model, "space": space, "fixed": fixed, "search": search, "trainer": trainer,
            "data": [data.name, data.n_users, data.n_items, data.n_train, data.feature_set], "feature_sets": labels}


def _parent_params(cfg: TuneBackbonesConfig, spaces: dict[str, Space], data_summary: dict) -> dict[str, Any]:
    return {"models": list(spaces), "search": to_dict(cfg.search), "trainer": to_dict(cfg.trainer),
            "spaces": {m: json.dumps(sp) for m, sp in spaces.items()}, "fixed": cfg.params,
            "data": {"path": cfg.data or f"synth:{cfg.synth_size}", "features": cfg.features,
                     "feature_sets": cfg.feature_sets,
                     "users": data_summary["n_users"], "items": data_summary["n_items"]}}


def _search_model(cfg: TuneBackbonesConfig, model: str, space: Space, fixed: dict, data_ref: Any, path: str,
                  restore: bool, callbacks: Sequence[Any], num_trials: int, labels: list[str]) -> Any:
    """Fit (or restore and finish) the Tuner of one model; returns its ResultGrid."""
    from ray import tune

    trainer = to_dict(cfg.trainer)
    if trainer["num_threads"] == 0:
        trainer["num_threads"] = max(1, int(cfg.search.cpus_per_trial))
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, data=data_ref, model=model, fixed=fixed, trainer=trainer),
        {"cpu": cfg.search.cpus_per_trial, "gpu": cfg.search.gpus_per_trial})
    if restore:
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        param_space = tune_space(space, cfg.search.algorithm, cfg.search.seed)
        points = distinct_draws(space, cfg.search.algorithm, cfg.search.num_samples, cfg.search.seed)
        if len(labels) > 1:
            if points is not None:    # the same draws on every feature set: a paired comparison
                points = [{**p, FEATURES_KEY: label} for p in points for label in labels]
            # listed draws name their set; other samples are crossed with every set, or a searcher picks one
            param_space[FEATURES_KEY] = (tune.choice(labels) if points is not None or _set_factor(cfg, labels) == 1
                                         else tune.grid_search(labels))
        tuner = tune.Tuner(trainable, param_space=param_space, tune_config=_tune_config(cfg, num_trials, points),
                           run_config=_run_config(cfg, model, space, fixed, path, callbacks))
    return tuner.fit()


def _tune_config(cfg: TuneBackbonesConfig, num_trials: int, points: list[dict[str, Any]] | None) -> Any:
    """Metric, searcher and scheduler; `points`: the exact configs of a random search over listed values."""
    from ray import tune

    metric = search_metric(cfg.trainer.valid_metric)
    return tune.TuneConfig(metric=metric, mode="max", search_alg=make_search_alg(cfg.search, metric, points),
                           scheduler=make_scheduler(cfg.search, cfg.trainer.epochs, num_trials),
                           num_samples=cfg.search.num_samples if points is None else len(points),
                           reuse_actors=cfg.search.reuse_actors)


def _run_config(cfg: TuneBackbonesConfig, model: str, space: Space, fixed: dict, path: str,
                callbacks: Sequence[Any]) -> Any:
    from ray import tune

    # Ray's newer console output ignores a ProgressReporter; the legacy one prints the chosen columns.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    # A checkpoint every epoch forces an experiment snapshot each time (what makes a kill lose no trial);
    # Tune warns about that cost on every report once epochs are short.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    metric = cfg.trainer.valid_metric
    reporter = tune.CLIReporter(
        metric_columns={"epoch": "epoch", "train_loss": "loss", f"valid/{metric}": f"valid {metric}",
                        search_metric(metric): f"best {metric}", f"best/test/{metric}": f"test@best {metric}"},
        parameter_columns=list(space), max_report_frequency=max(1, int(cfg.search.report_every_s)),
        sort_by_metric=True, max_progress_rows=30, print_intermediate_tables=True)
    storage_path, name = path.rsplit("/", 1)
    return tune.RunConfig(name=name, storage_path=storage_path, verbose=1, progress_reporter=reporter,
                          callbacks=[TrialRuns(model, fixed), *callbacks],
                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                          failure_config=tune.FailureConfig(max_failures=1))


def _finish(cfg: TuneBackbonesConfig, result: SearchResult, out: Callable[[str], None]) -> None:
    """Print the leaderboard; write it, the trials, the plot and each model's best.pt locally and to MLflow."""
    ks = cfg.trainer.topk
    local = Path(cfg.output) / cfg.name
    local.mkdir(parents=True, exist_ok=True)
    out("")
    out(leaderboard_text(result.trials, ks))
    out(f"{len(result.trials)} trials, {result.trial_epochs} trial-epochs in {result.seconds:.0f}s"
        + ("" if result.complete else " (search incomplete)"))
    for model, row in result.best.items():
        if row.checkpoint is not None:
            dest = local / "best" / model
            shutil.rmtree(dest, ignore_errors=True)
            row.checkpoint.to_directory(str(dest))
            if (dest / "best.pt").is_file():
                result.best_checkpoints[model] = str((dest / "best.pt").resolve())
    board, trials = leaderboard_rows(result.trials, ks), trials_table(result.trials, ks)
    (local / "leaderboard.json").write_text(json.dumps(board, indent=1, default=str))
    (local / "trials.json").write_text(json.dumps(trials, indent=1, default=str))
    fig = curves_figure(result.trials, cfg.trainer.valid_metric)
    fig.savefig(local / "learning_curves.png", dpi=110)
    out(f"leaderboard, trials, learning curves and best checkpoints in {local.resolve()}")
    if result.run_id is None:
        import matplotlib.pyplot as plt

        plt.close(fig)
    else:
        _log_outputs(cfg, result, board, trials, fig)


def _log_outputs(cfg: TuneBackbonesConfig, result: SearchResult, board: list[dict], trials: list[dict],
                 fig: Any) -> None:
    """The parent run gets the leaderboard, trials, plot and best checkpoint; each model's best trial its best.pt."""
    tracking.log_table(board, "leaderboard.json", replace=True)
    tracking.log_table(trials, "trials.json", replace=True)
    tracking.log_figure(fig, "learning_curves.png")
    tracking.set_tags({"complete": result.complete, "trials": len(result.trials)})
    tracking.log_metrics({"trial_epochs": result.trial_epochs, "trials": len(result.trials),
                          "search_seconds": result.seconds})
    best = result.best_model
    if best is not None:
        tracking.set_tags({"best_model": best.model, "best_trial": best.trial_id,
                           "best_config": json.dumps(best.config)})
        tracking.log_metrics({f"best_{split}/{k}": v for split, m in (("valid", best.valid), ("test", best.test))
                              for k, v in m.items()})
        if best.model in result.best_checkpoints:
            tracking.log_artifact(result.best_checkpoints[best.model], "best_checkpoint")
    for model, path in result.best_checkpoints.items():
        child = tracking.find_run_id(cfg.tracking, {"mlflow.parentRunId": result.run_id,
                                                    "trial_id": result.best[model].trial_id})
        if child is not None:
            tracking.RunHandle(child).log_artifact(path, "checkpoint")
