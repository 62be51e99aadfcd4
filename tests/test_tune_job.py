import importlib.util
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _job_main():
    spec = importlib.util.spec_from_file_location("tune_backbones_job", ROOT / "jobs" / "tune_backbones.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_job_tunes_three_models_on_the_generated_set_and_prints_the_leaderboard(ray_local, mlflow_store, tmp_path,
                                                                                capsys, monkeypatch):
    from raymmrec.recsys.interaction_data import InteractionData

    puts = []
    real_put = InteractionData.put
    monkeypatch.setattr(InteractionData, "put", lambda self: puts.append(1) or real_put(self))
    main = _job_main()
    main([f"output={tmp_path / 'out'}", f"tracking.uri={mlflow_store.uri}", "tracking.experiment=test",
          "models=[bpr, lightgcn, vbpr]", "trainer.epochs=3", "search.grace_period=1", "search.max_concurrent_trials=1",
          "spaces={bpr: {reg_weight: {grid: [1.0e-4, 2.0]}}, lightgcn: {n_layers: {grid: [1, 2]}}, "
          "vbpr: {reg_weight: {grid: [1.0e-4, 2.0]}}}"])
    out = capsys.readouterr().out
    assert len(puts) == 1       # one copy of the data in the object store for the trials of all three models
    assert "generating the synthetic 'tiny' dataset" in out
    assert "Trial name" in out and "best recall@20" in out          # Ray Tune's live progress table
    board = out[out.index("leaderboard:"):]
    for model in ("bpr", "lightgcn", "vbpr"):
        assert f"{model}: 2 trials" in out
        assert f"\n{model} " in board
    assert "recall@10  recall@20  recall@50  ndcg@10  ndcg@20  ndcg@50" in board
    runs = mlflow.search_runs(experiment_names=["test"], output_format="list")
    parents = [r for r in runs if r.data.tags.get("stage") == "tune"]
    assert len(parents) == 1 and parents[0].data.tags["complete"] == "True"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["model"] for r in children) == ["bpr", "bpr", "lightgcn", "lightgcn", "vbpr", "vbpr"]
    assert (tmp_path / "out" / "tune_backbones" / "learning_curves.png").is_file()


def test_job_names_bad_input_in_one_line(capsys):
    main = _job_main()
    with pytest.raises(SystemExit) as exit_info:
        main(["models=[lightgnc]"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: unknown model 'lightgnc' (known models:")
    with pytest.raises(SystemExit):
        main(["search.algorithm=annealing"])
    assert "search.algorithm" in capsys.readouterr().err
