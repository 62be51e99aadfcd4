import json

import mlflow

from raymmrec import tracking


def test_job_run_logs_params_metrics_and_nested_children(mlflow_store):
    with tracking.job_run(mlflow_store, "parent", params={"a": {"b": 1}, "s": "x"}) as parent:
        tracking.log_metrics({"recall@20": 0.5, "note": "skip"}, step=1)
        with tracking.job_run(mlflow_store, "child", params={"k": 2}) as child:
            tracking.log_metrics({"loss": 1.0})
    client = mlflow.MlflowClient()
    p = client.get_run(parent.info.run_id)
    c = client.get_run(child.info.run_id)
    assert p.data.params == {"a.b": "1", "s": "x"}
    assert p.data.metrics == {"recall_at_20": 0.5}
    assert c.data.tags["mlflow.parentRunId"] == parent.info.run_id
    exp = client.get_experiment(p.info.experiment_id)
    assert exp.name == "test"


def test_table_replace_and_runs_addressed_by_id(mlflow_store):
    # One store for both checks: creating a SQLite store costs seconds.
    with tracking.job_run(mlflow_store, "parent") as parent:
        tracking.log_table([{"a": 1, "b": "x"}], "t.json")
        tracking.log_table([{"a": 2, "b": "y"}, {"a": 3, "b": "z"}], "t.json", replace=True)
        child, created = tracking.RunHandle.child_of(parent.info.run_id, "c", {"trial_id": "t1"})
        child.log_params({"cfg": {"x": 1}})
        child.log_metrics({"recall@20": 0.25, "why": "skip"}, step=3)
        child.set_tags({"stop_reason": "pruned"})
        child.end()
        again, created_again = tracking.RunHandle.child_of(parent.info.run_id, "c", {"trial_id": "t1"})
        assert parent.info.run_id == tracking.active_run_id()
    path = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="t.json")
    assert json.loads(open(path).read()) == {"columns": ["a", "b"], "data": [[2, "y"], [3, "z"]]}   # not appended
    client = mlflow.MlflowClient()
    run = client.get_run(child.run_id)
    assert created and not created_again and again.run_id == child.run_id
    assert run.data.params == {"cfg.x": "1"} and run.data.tags["stop_reason"] == "pruned"
    assert [(m.step, m.value) for m in client.get_metric_history(child.run_id, "recall_at_20")] == [(3, 0.25)]
    assert run.info.status == "RUNNING"    # reopened by the second child_of
    assert tracking.find_run_id(mlflow_store, {"trial_id": "t1"}) == child.run_id
    assert tracking.find_run_id(mlflow_store, {"trial_id": "nope"}) is None
