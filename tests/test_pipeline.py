"""The whole pipeline on the tiny generated set: every stage's output, the MLflow runs, and stage reuse."""
import json

import mlflow
import pyarrow.parquet as pq
import pytest

from raymmrec.config import load_config
from raymmrec.errors import ConfigError
from raymmrec.pipeline import STAGES, SUCCESS, Pipeline, PipelineConfig, run_pipeline

TINY = ["prepare.synth.size=tiny", "pretrain.max_steps=4", "pretrain.checkpoint_every=2", "pretrain.log_every=2",
        "pretrain.optim.warmup_steps=1", "tune.models=[lightgcn,vbpr]", "tune.trainer.epochs=2",
        "tune.search.algorithm=random", "tune.search.num_samples=2", "tune.feature_sets=[raw]",
        "tune.search.grace_period=1", "recommend.k=5", "recommend.cold_k=3"]


@pytest.mark.timeout(1800)
def test_pipeline_end_to_end_then_reuses_finished_stages(tmp_path, ray_local, mlflow_store):
    cfg = load_config(PipelineConfig, TINY + [f"workdir={tmp_path / 'w'}"])
    cfg.tracking = mlflow_store
    lines: list[str] = []
    records = run_pipeline(cfg, out=lines.append)
    assert list(records) == list(STAGES) and all(r.status == "ran" for r in records.values())
    for r in records.values():
        assert json.loads((r.folder / SUCCESS).read_text()) == json.loads(json.dumps(r.outputs, default=str))

    dataset = records["prepare"].outputs["dataset_dir"]
    stats = records["prepare"].outputs["stats"]
    assert stats["users"] > 100 and stats["items"] > 50
    assert (records["pretrain"].folder / "encoder").is_dir() and records["pretrain"].outputs["steps"] == 4
    feats = records["features"].outputs
    # the features stage writes into its own folder, never into the prepared dataset dir
    assert feats["folder"].startswith(str(records["features"].folder)) and feats["quality"]
    assert sorted(p.name for p in (records["prepare"].folder / "dataset" / "features").iterdir()) == ["raw"]
    tuned = records["tune"].outputs
    assert tuned["best_model"] in ("lightgcn", "vbpr")
    # VBPR also searched the dataset's raw set (the pipeline's tune.feature_sets): the best trial's set is handed on
    assert "vbpr: 4 trials" in tuned["leaderboard"] and "features=" in tuned["leaderboard"]
    assert tuned["features"] in (feats["feature_set"], "raw")
    recs = pq.read_table(records["recommend"].outputs["recommendations"])
    assert recs.num_rows == stats["users"]
    summary = "\n".join(lines)
    assert "raymmrec pipeline summary" in summary and "leaderboard" in summary

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(mlflow_store.experiment)
    runs = client.search_runs([exp.experiment_id], max_results=500)
    parent = [r for r in runs if r.info.run_name == "pipeline"]
    assert len(parent) == 1
    children = {r.data.tags.get("stage") for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id}
    assert {"pretrain", "recommend"} <= children and len(children) >= 4

    again = Pipeline(cfg, out=lines.append).run()
    assert all(r.status == "skipped" for r in again.values())
    assert again["tune"].outputs == tuned


def test_pipeline_rejects_unknown_and_orphan_stages():
    with pytest.raises(ConfigError, match="unknown stage 'train'"):
        Pipeline(load_config(PipelineConfig, ["stages=[prepare,train]"]))
    with pytest.raises(ConfigError, match="needs stage 'tune'"):
        Pipeline(load_config(PipelineConfig, ["stages=[prepare,recommend]"]))
