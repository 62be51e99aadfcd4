"""Trainer resume after crashes: a failing report, a SIGKILLed job process, a torn checkpoint write, sparse
checkpoints, unreadable checkpoint files."""
from __future__ import annotations

import importlib.util
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from raymmrec.config import load_config
from raymmrec.errors import DataError
from raymmrec.recsys.checkpoint import LAST, load_checkpoint
from raymmrec.recsys.train_backbone import TrainBackboneConfig, train_backbone
from raymmrec.recsys.metrics import full_ranking_metrics
from raymmrec.recsys.trainer import TrainerConfig, load_trained_model, train_model
from recsys_planted import FAST_TRAINER, planted, tiny_data, write_dataset_dir

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "jobs" / "train_backbone.py"
# Batches of 8 make an epoch of the tiny set ~300 steps: long enough for a kill to land inside one.
CRASH_TRAINER = {"epochs": 7, "batch_size": 8, "lr": 0.005, "patience": 50, "eval_batch_size": 64, "num_threads": 1}
EPOCH_LINE = re.compile(r"^epoch +(\d+) \| .*\| ([0-9.]+)s train")


def _job_args(data_dir: Path, output: Path) -> list[str]:
    return ["model=bpr", f"data={data_dir}", f"output={output}", "tracking.enabled=false"] + [
        f"trainer.{k}={v}" for k, v in CRASH_TRAINER.items()]


def _curve(history: list[dict]) -> list[tuple]:
    """What an epoch computed (not how long it took)."""
    return [(r["epoch"], r["train_loss"], r.get("valid/recall@20", -1.0), r.get("test/ndcg@20", -1.0), r["best_epoch"])
            for r in history]


def _assert_same_curve(got: list[dict], want: list[dict]) -> None:
    assert [r[0] for r in _curve(got)] == [r[0] for r in _curve(want)]
    for a, b in zip(_curve(got), _curve(want)):
        assert a == pytest.approx(b, rel=1e-6), (a, b)


def _only_run_dir(output: Path) -> Path:
    dirs = [p.parent for p in output.glob("bpr-*/" + LAST)]
    assert len(dirs) == 1, dirs
    return dirs[0]


class Killed(Exception):
    """A crash right after an epoch's report (its checkpoint, when it writes one, is on disk)."""


def _train_killed_after(epoch: int, cfg: TrainerConfig, data, run_dir: Path) -> None:
    def report(record):
        if record["epoch"] == epoch:
            raise Killed

    with pytest.raises(Killed):
        train_model("bpr", {}, cfg, data, report=report, checkpoint_dir=run_dir)


def test_sigkilled_job_resumes_to_the_history_of_an_uninterrupted_run(tmp_path):
    data_dir = write_dataset_dir(planted(), tmp_path / "ds")
    args = _job_args(data_dir, tmp_path / "uninterrupted")
    full = train_backbone(load_config(TrainBackboneConfig, args, default_yaml=ROOT / "configs" / "train_backbone.yaml"),
                          out=lambda line: None)
    assert full.epochs_run == CRASH_TRAINER["epochs"] and full.stop_reason == "finished"

    out = tmp_path / "crashed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    job = subprocess.Popen([sys.executable, str(JOB), *_job_args(data_dir, out)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=env)
    try:
        for line in job.stdout:
            hit = EPOCH_LINE.match(line)
            if hit and int(hit.group(1)) == 3:
                # epoch 4 has just started; a third of an epoch's training later it is surely still running
                time.sleep(float(hit.group(2)) / 3)
                job.send_signal(signal.SIGKILL)
                break
        assert job.wait(timeout=60) == -signal.SIGKILL
    finally:
        job.kill()
        job.stdout.close()
    run_dir = _only_run_dir(out)
    assert load_checkpoint(run_dir / LAST)["epoch"] == 3        # killed inside epoch 4, before its checkpoint

    rerun = subprocess.run([sys.executable, str(JOB), *_job_args(data_dir, out)], capture_output=True, text=True,
                           timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stderr
    printed = [int(m.group(1)) for m in map(EPOCH_LINE.match, rerun.stdout.splitlines()) if m]
    assert printed == list(range(4, CRASH_TRAINER["epochs"] + 1))    # resumed, not restarted
    resumed = load_checkpoint(run_dir / LAST)["trainer"]
    assert resumed["stop_reason"] == "finished"
    _assert_same_curve(resumed["history"], full.history)


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path):
    cfg = TrainerConfig(epochs=30, patience=2, **FAST_TRAINER)
    data = tiny_data()
    full = train_model("bpr", {}, cfg, data, checkpoint_dir=tmp_path / "a")

    _train_killed_after(3, cfg, data, tmp_path / "b")
    seen = []
    resumed = train_model("bpr", {}, cfg, data, report=seen.append, checkpoint_dir=tmp_path / "b")
    assert seen[0]["epoch"] == 4
    assert resumed.epochs_run == full.epochs_run and resumed.best_epoch == full.best_epoch
    assert resumed.stop_reason == full.stop_reason == "early_stopped"
    assert [r["train_loss"] for r in resumed.history] == pytest.approx([r["train_loss"] for r in full.history])
    assert resumed.test_at_best == pytest.approx(full.test_at_best)
    # A finished run resumes to its result without training again.
    assert train_model("bpr", {}, cfg, data, report=seen.append, checkpoint_dir=tmp_path / "b").epochs_run == full.epochs_run
    assert len(seen) == full.epochs_run - 3
    model = load_trained_model(resumed.best_checkpoint, data)
    assert full_ranking_metrics(model.full_scores, data, "test")["recall@20"] == pytest.approx(full.test_at_best["recall@20"])


def test_a_torn_checkpoint_write_is_never_read_as_last(tmp_path, monkeypatch):
    cfg = TrainerConfig(epochs=6, patience=50, **FAST_TRAINER)
    data = tiny_data()
    full = train_model("bpr", {}, cfg, data, checkpoint_dir=tmp_path / "a")

    class Died(BaseException):
        pass

    real_save = torch.save

    def torn_save(obj, f, *args, **kwargs):
        """At epoch 4's checkpoint half of the bytes reach the file, then the process dies."""
        if isinstance(obj, dict) and obj.get("epoch") == 4:
            buf = io.BytesIO()
            real_save(obj, buf, *args, **kwargs)
            Path(f).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise Died
        return real_save(obj, f, *args, **kwargs)

    run_dir = tmp_path / "b"
    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(Died):
        train_model("bpr", {}, cfg, data, checkpoint_dir=run_dir)
    monkeypatch.undo()
    torn = [p for p in run_dir.iterdir() if p.name != "best.pt"]
    assert len(torn) == 2                          # last.pt and the half-written file beside it
    partial = next(p for p in torn if p.name != LAST)
    with pytest.raises(DataError, match="cannot be read"):
        load_checkpoint(partial)                   # the tear is real
    assert load_checkpoint(run_dir / LAST)["epoch"] == 3
    seen = []
    resumed = train_model("bpr", {}, cfg, data, report=seen.append, checkpoint_dir=run_dir)
    assert seen[0]["epoch"] == 4
    _assert_same_curve(resumed.history, full.history)
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", LAST]   # the next write replaced the torn file


def test_checkpoint_every_3_writes_only_at_multiples_bests_and_the_end_and_resumes_from_there(tmp_path):
    # eval_every=2: odd epochs are never a new best, so only multiples of 3 (and the last epoch) write them
    cfg = TrainerConfig(epochs=10, eval_every=2, checkpoint_every=3, patience=50, **FAST_TRAINER)
    data = tiny_data()
    written, improved = [], []

    def watch(run_dir: Path):
        def report(record):
            if (run_dir / LAST).is_file() and load_checkpoint(run_dir / LAST)["epoch"] == record["epoch"]:
                written.append(record["epoch"])
            if record["improved"]:
                improved.append(record["epoch"])
        return report

    full = train_model("bpr", {}, cfg, data, report=watch(tmp_path / "a"), checkpoint_dir=tmp_path / "a")
    assert set(improved) <= {2, 4, 6, 8, 10} and improved
    assert written == sorted({3, 6, 9, 10} | set(improved))
    assert not {1, 5, 7} & set(written)

    _train_killed_after(8, cfg, data, tmp_path / "b")
    saved = load_checkpoint(tmp_path / "b" / LAST)["epoch"]
    assert saved == (8 if 8 in improved else 6)
    seen = []
    resumed = train_model("bpr", {}, cfg, data, report=seen.append, checkpoint_dir=tmp_path / "b")
    assert seen[0]["epoch"] == saved + 1
    _assert_same_curve(resumed.history, full.history)
    assert resumed.best_epoch == full.best_epoch and resumed.test_at_best == pytest.approx(full.test_at_best)


def _load_job_main():
    spec = importlib.util.spec_from_file_location("train_backbone_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("damage,expected", [
    ("truncated", "cannot be read"), ("garbage", "cannot be read"), ("foreign", "is not a raymmrec training checkpoint")])
def test_an_unreadable_checkpoint_is_a_one_line_error_naming_the_file(tmp_path, capsys, damage, expected):
    data_dir = write_dataset_dir(planted(), tmp_path / "ds")
    main = _load_job_main()
    args = ["model=bpr", f"data={data_dir}", f"output={tmp_path / 'out'}", "tracking.enabled=false",
            "trainer.epochs=1", "trainer.num_threads=1", "trainer.batch_size=256"]
    main(args)
    last = _only_run_dir(tmp_path / "out") / LAST
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[:1000])
    elif damage == "garbage":
        last.write_bytes(b"this is not a checkpoint\n" * 10)
    else:
        torch.save({"weights": torch.zeros(3)}, last)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err            # one line
    assert err.startswith("error: ") and f"'{last}'" in err and expected in err
