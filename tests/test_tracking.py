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
