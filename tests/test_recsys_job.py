import subprocess
import sys

import mlflow
import pytest

from raymmrec.recsys.train_backbone import TrainBackboneConfig, train_backbone
from raymmrec.recsys.trainer import TrainerConfig
from recsys_planted import FAST_TRAINER, planted, write_dataset_dir, write_mmrec_folder

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_job_trains_logs_and_resumes(tmp_path, mlflow_store):
    data_dir = write_dataset_dir(planted(), tmp_path / "ds")
    cfg = TrainBackboneConfig(model="vbpr", data=str(data_dir), output=str(tmp_path / "out"),
                              trainer=TrainerConfig(epochs=4, **FAST_TRAINER), tracking=mlflow_store)
    lines: list[str] = []
    result = train_backbone(cfg, out=lines.append)
    text = "\n".join(lines)
    assert "epoch    4 |" in text and "split  items  recall@10" in text and "test   cold" in text
    run = mlflow.search_runs(experiment_names=["test"], output_format="list")[0]
    assert run.data.params["model"] == "vbpr" and run.data.tags["stop_reason"] == "finished"
    history = mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, "valid/recall_at_20")
    assert [m.step for m in history] == [1, 2, 3, 4]
    artifacts = {a.path for a in mlflow.tracking.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"learning_curve.png", "checkpoint", "metrics_at_best_epoch.json"} <= artifacts
    # Same config with more epochs: continues the same checkpoint dir and MLflow run from epoch 5.
    cfg.trainer.epochs = 6
    lines.clear()
    again = train_backbone(cfg, out=lines.append)
    assert any(line.startswith("resuming from") for line in lines)
    assert [r["epoch"] for r in again.history] == list(range(1, 7)) and again.checkpoint_dir == result.checkpoint_dir
    assert len(mlflow.search_runs(experiment_names=["test"], output_format="list")) == 1


def test_job_cli_on_an_mmrec_folder_and_user_errors(tmp_path):
    folder = write_mmrec_folder(planted(), tmp_path / "toy")
    base = [sys.executable, str(ROOT / "jobs" / "train_backbone.py"), f"data={folder}", f"output={tmp_path / 'o'}",
            "tracking.enabled=false", "trainer.epochs=2", "trainer.num_threads=1"]
    ok = subprocess.run(base + ["model=freedom"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "freedom: finished after 2 epochs" in ok.stdout
    bad = subprocess.run(base + ["model=lightgnc"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: unknown model 'lightgnc' (known models:")
    assert "Traceback" not in bad.stderr
