"""Stage 2 under Ray Train: a 2-worker ZeRO-3 run, killed mid-way, resumes and matches an uninterrupted ZeRO-0 run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ray_faults import kill_a_worker_once_checkpointed

from raymmrec.encoders import load_encoder, read_encoder_config
from raymmrec.pretrain.pairs import PairDataConfig
from raymmrec.pretrain.stage import PretrainConfig, run_pretrain


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    from raymmrec.data.synth import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(SynthConfig(size="tiny", seed=0), root)
    return root


def _config(tmp_path: Path, synth_dir: Path, tracking, name: str, **over) -> PretrainConfig:
    cfg = PretrainConfig(max_steps=10, log_every=2, checkpoint_every=4, num_workers=2, storage_path=str(tmp_path),
                         run_name=name, tracking=tracking, log_weights=False)
    # 161 pairs = 10 steps of 2 workers x 8: one pass covers the run, so no materialised repeat is needed
    cfg.data = PairDataConfig(source=str(synth_dir), batch_size=8, augment=False, mask_seed=0, preserve_order=True,
                              repeat=1)
    cfg.optim.warmup_steps = 2
    for key, value in over.items():
        obj = cfg
        *path, last = key.split(".")
        for part in path:
            obj = getattr(obj, part)
        setattr(obj, last, value)
    return cfg


def test_zero3_killed_midway_resumes_and_matches_uninterrupted_zero0(ray_local, tmp_path, synth_dir, mlflow_store):
    r0 = run_pretrain(_config(tmp_path, synth_dir, mlflow_store, "z0", **{"deepspeed.zero_stage": 0}))

    with kill_a_worker_once_checkpointed(tmp_path / "z3") as killed:
        r3 = run_pretrain(_config(tmp_path, synth_dir, mlflow_store, "z3", **{"deepspeed.zero_stage": 3}))
    assert killed, "no worker was killed (no checkpoint was registered?)"
    assert r0.steps == r3.steps == 10

    import mlflow

    runs = mlflow.search_runs(experiment_names=[mlflow_store.experiment])
    row = runs[runs["tags.run_name"] == "z3"].iloc[0]
    assert row["metrics.resumed_at_step"] in (4, 8)          # restarted from a checkpoint, not from step 0
    # same pairs in the same order after the restart, and ZeRO-3 sharding = plain data parallel
    curve0 = np.array([(h["step"], h["loss"], h["loss_mlm"], h["loss_mim"]) for h in r0.history])
    curve3 = np.array([(h["step"], h["loss"], h["loss_mlm"], h["loss_mim"]) for h in r3.history])
    assert curve0[:, 0].tolist() == curve3[:, 0].tolist() == [2, 4, 6, 8, 10]
    np.testing.assert_allclose(curve3[:, 1:], curve0[:, 1:], rtol=2e-3)
    assert curve3[-1, 1] < curve3[0, 1]                       # and it learns

    # the stage output: consolidated fp32 weights + config, loadable by stage 3
    enc = load_encoder(r3.encoder_dir)
    assert read_encoder_config(r3.encoder_dir).kind == "beit3" and enc.supports_fused
    meta = (r3.encoder_dir / "encoder.json").read_text()
    assert '"steps": 10' in meta and '"objective": "mlm_mim"' in meta
    for key in ("metrics.lr", "metrics.samples_per_s", "metrics.data_wait_frac", "metrics.loss_mlm",
                "metrics.undecodable_images", "params.deepspeed.zero_stage"):
        assert key in runs.columns and row[key] == row[key], key     # present and not NaN
    assert 0.0 <= row["metrics.data_wait_frac"] <= 1.0 and row["metrics.samples_per_s"] > 0
