"""The one place that talks to MLflow: local SQLite store by default, MLFLOW_TRACKING_URI honoured."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from raymmrec.config import flatten

# MLflow's own limits: a param value is at most 6000 chars; a batch holds at most 100 params.
_PARAM_MAX = 6000
_PARAM_BATCH = 100


@dataclass
class TrackingConfig:
    """Where runs go. Empty `uri` means MLFLOW_TRACKING_URI, else a SQLite store under `root`."""

    experiment: str = "raymmrec"
    uri: str = ""
    root: str = "runs"
    enabled: bool = True


def resolve_uri(cfg: TrackingConfig) -> str:
    """The tracking URI in force: config, then environment, then `sqlite:///<root>/mlflow.db`."""
    if cfg.uri:
        return cfg.uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = Path(cfg.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def setup(cfg: TrackingConfig) -> str:
    """Point MLflow at the store and experiment of `cfg`; returns the experiment id."""
    import mlflow

    uri = resolve_uri(cfg)
    mlflow.set_tracking_uri(uri)
    # Children (Ray workers, Tune trials) inherit the store through the environment.
    os.environ["MLFLOW_TRACKING_URI"] = uri
    exp = mlflow.get_experiment_by_name(cfg.experiment)
    if exp is None:
        artifact_location = None
        if uri.startswith("sqlite:"):
            artifact_location = (Path(cfg.root).resolve() / "artifacts").as_uri()
        exp_id = mlflow.create_experiment(cfg.experiment, artifact_location=artifact_location)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    os.environ["MLFLOW_EXPERIMENT_NAME"] = cfg.experiment
    return exp_id


@contextlib.contextmanager
def job_run(cfg: TrackingConfig, run_name: str, params: Mapping[str, Any] | None = None,
            tags: Mapping[str, str] | None = None, resume_run_id: str | None = None) -> Iterator[Any]:
    """A run for one job: nested under an active run (pipeline parent) when there is one.

    `resume_run_id` continues that run (a resumed job) when the store still holds it.
    """
    if not cfg.enabled:
        yield None
        return
    import mlflow

    if mlflow.active_run() is None:
        setup(cfg)
    parent = os.environ.get("RAYMMREC_PARENT_RUN_ID")
    nested = mlflow.active_run() is not None
    run_tags = dict(tags or {})
    if parent and not nested:
        run_tags["mlflow.parentRunId"] = parent
    if resume_run_id and not _run_exists(resume_run_id):
        resume_run_id = None
    start = {"run_id": resume_run_id} if resume_run_id else {"run_name": run_name, "tags": run_tags}
    with mlflow.start_run(nested=nested, **start) as run:
        if params:
            log_params(params)
        yield run


def _run_exists(run_id: str) -> bool:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.get_run(run_id)
    except MlflowException:
        return False
    return True


def log_params(params: Mapping[str, Any]) -> None:
    """Log a (possibly nested) mapping as flat params, trimmed to MLflow's limits."""
    import mlflow

    if mlflow.active_run() is None:
        return
    flat = {k: _param_str(v) for k, v in flatten(dict(params)).items()}
    items = list(flat.items())
    for i in range(0, len(items), _PARAM_BATCH):
        mlflow.log_params(dict(items[i:i + _PARAM_BATCH]))


def _param_str(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s[:_PARAM_MAX]


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log numeric metrics (non-numbers are skipped); '@' is not allowed in names, so it becomes '_at_'."""
    import mlflow

    if mlflow.active_run() is None:
        return
    clean = {metric_name(k): float(v) for k, v in metrics.items() if _is_number(v)}
    if clean:
        mlflow.log_metrics(clean, step=step)


def log_metrics_to_run(run_id: str, uri: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log metrics into an existing run from any process (a Ray Train worker), without an active run there."""
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    batch = [Metric(metric_name(k), float(v), now, int(step)) for k, v in metrics.items() if _is_number(v)]
    if batch:
        MlflowClient(tracking_uri=uri).log_batch(run_id, metrics=batch)


def metric_history(run_id: str, keys: list[str], uri: str | None = None) -> list[dict[str, float]]:
    """Rows `{step, key: value, ...}` of a run's metrics by step; a step logged twice (a resumed run) keeps its last value."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    rows: dict[int, dict[str, float]] = {}
    for key in keys:
        for m in sorted(client.get_metric_history(run_id, metric_name(key)), key=lambda m: (m.step, m.timestamp)):
            rows.setdefault(m.step, {"step": m.step})[key] = m.value
    return [rows[s] for s in sorted(rows)]


def metric_name(name: str) -> str:
    """MLflow-safe metric name (`recall@20` → `recall_at_20`)."""
    return name.replace("@", "_at_")


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return not isinstance(v, bool)


def set_tags(tags: Mapping[str, Any]) -> None:
    """Tag the active run (e.g. a stop reason known only at the end)."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_dict(data: Any, artifact_file: str) -> None:
    """Log a JSON/YAML-serialisable object as an artifact."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_dict(data, artifact_file)


def log_table(rows: list[Mapping[str, Any]], artifact_file: str, replace: bool = False) -> None:
    """Log a list of row dicts as an MLflow table artifact (JSON).

    MLflow appends to a table the run already holds; `replace` overwrites it instead (a resumed run).
    """
    import mlflow

    if mlflow.active_run() is None or not rows:
        return
    columns: dict[str, list] = {k: [] for k in rows[0]}
    for r in rows:
        for k in columns:
            columns[k].append(r.get(k))
    if replace and _artifact_exists(artifact_file):
        # The same "split" layout mlflow.log_table writes.
        mlflow.log_dict({"columns": list(columns), "data": [list(row) for row in zip(*columns.values())]},
                        artifact_file)
        return
    mlflow.log_table(data=columns, artifact_file=artifact_file)


def _artifact_exists(artifact_file: str) -> bool:
    import mlflow

    folder = artifact_file.rsplit("/", 1)[0] if "/" in artifact_file else None
    listed = mlflow.MlflowClient().list_artifacts(mlflow.active_run().info.run_id, folder)
    return any(a.path == artifact_file for a in listed)


def log_figure(fig: Any, artifact_file: str) -> None:
    """Log a matplotlib figure as a PNG artifact and close it."""
    import matplotlib.pyplot as plt
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_figure(fig, artifact_file)
    plt.close(fig)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    """Log a file or directory as an artifact."""
    import mlflow

    if mlflow.active_run() is None:
        return
    p = Path(path)
    if p.is_dir():
        mlflow.log_artifacts(str(p), artifact_path=artifact_path)
    else:
        mlflow.log_artifact(str(p), artifact_path=artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    """Log a text artifact."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_text(text, artifact_file)


def log_from_worker(args: Mapping[str, Any], metrics: Mapping[str, float], step: int) -> None:
    """Log a Ray Train worker's metrics into the driver's run (`args`: run_id, tracking_uri); never raises."""
    try:
        log_metrics_to_run(args["run_id"], args["tracking_uri"], metrics, step)
    except Exception as exc:  # noqa: BLE001 - a tracking hiccup must not kill a long run
        import logging

        logging.getLogger(__name__).warning("MLflow logging failed at step %d: %s", step, exc)


def scratch_dir() -> tempfile.TemporaryDirectory:
    """A temporary directory for artifacts written before logging."""
    return tempfile.TemporaryDirectory(prefix="raymmrec-")


def active_run_id() -> str | None:
    """The id of the active run, None when there is none (tracking disabled or outside a run)."""
    import mlflow

    run = mlflow.active_run()
    return run.info.run_id if run is not None else None


def find_run_id(cfg: TrackingConfig, tags: Mapping[str, str]) -> str | None:
    """The newest run of `cfg`'s experiment carrying all of `tags` (None when none or tracking is off)."""
    import mlflow

    if not cfg.enabled:
        return None
    exp_id = setup(cfg)
    found = mlflow.MlflowClient().search_runs([exp_id], _tag_filter(tags), max_results=1,
                                             order_by=["attributes.start_time DESC"])
    return found[0].info.run_id if found else None


def _tag_filter(tags: Mapping[str, str]) -> str:
    return " and ".join(f"tags.`{k}` = '{_quoted(v)}'" for k, v in tags.items())


def _quoted(value: Any) -> str:
    return str(value).replace("'", "\\'")


class RunHandle:
    """An existing run addressed by id, for code that logs on behalf of many runs at once (a Tune callback
    on the driver); unlike the functions above it needs no active run."""

    def __init__(self, run_id: str) -> None:
        import mlflow

        self.run_id = run_id
        self._client = mlflow.MlflowClient()

    @classmethod
    def child_of(cls, parent_run_id: str, run_name: str, tags: Mapping[str, Any]) -> tuple["RunHandle", bool]:
        """(run, created): the child of `parent_run_id` with these tags, reopened when it exists (a resumed search)."""
        import mlflow

        client = mlflow.MlflowClient()
        parent = client.get_run(parent_run_id)
        str_tags = {k: str(v) for k, v in tags.items()}
        found = client.search_runs([parent.info.experiment_id],
                                   _tag_filter({"mlflow.parentRunId": parent_run_id, **str_tags}), max_results=1)
        if found:
            client.update_run(found[0].info.run_id, status="RUNNING")
            return cls(found[0].info.run_id), False
        run = client.create_run(parent.info.experiment_id, run_name=run_name,
                                tags={"mlflow.parentRunId": parent_run_id, **str_tags})
        return cls(run.info.run_id), True

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Flat params, trimmed to MLflow's limits."""
        from mlflow.entities import Param

        items = [Param(k, _param_str(v)) for k, v in flatten(dict(params)).items()]
        for i in range(0, len(items), _PARAM_BATCH):
            self._client.log_batch(self.run_id, params=items[i:i + _PARAM_BATCH])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numeric metrics in one batch ('@' → '_at_'; non-numbers skipped)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(metric_name(k), float(v), now, step or 0) for k, v in metrics.items() if _is_number(v)]
        if batch:
            self._client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (values as strings)."""
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file or a directory's files."""
        p = Path(path)
        if p.is_dir():
            self._client.log_artifacts(self.run_id, str(p), artifact_path)
        else:
            self._client.log_artifact(self.run_id, str(p), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        """Close the run as FINISHED, FAILED or KILLED."""
        self._client.set_terminated(self.run_id, status=status)
