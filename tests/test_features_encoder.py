"""Resolving `encoder=`: seeded random init (identical per actor), stage-2 dirs, config files, tags, errors."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml

from raymmrec.encoders import EncoderConfig, create_encoder, save_encoder
from raymmrec.encoders.source import resolve_encoder
from raymmrec.errors import ConfigError
from raymmrec.features import FeaturesConfig
from raymmrec.features.extract import encoder_for

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_random_init_is_seeded_so_every_actor_builds_the_same_model():
    src = resolve_encoder("", EncoderConfig(kind="clip"), seed=3)
    assert src.random_init and src.checkpoint_hash.startswith("random:") and src.checkpoint_hash.endswith("seed3")
    assert _same_weights(src.build(), src.build())
    assert not _same_weights(src.build(), resolve_encoder("random", EncoderConfig(kind="clip"), seed=4).build())


def test_stage2_dir_config_file_and_checkpoint_file(tmp_path):
    enc = create_encoder(EncoderConfig(kind="clip"))
    out = save_encoder(enc, tmp_path / "enc")
    src = resolve_encoder(str(out), EncoderConfig(kind="beit3"))
    assert src.stage_dir == str(out) and src.config.kind == "clip" and len(src.checkpoint_hash) == 16
    assert _same_weights(src.build(), enc)
    (tmp_path / "beit3.yaml").write_text(yaml.safe_dump({"kind": "beit3", "beit3": {"size": "tiny"}}))
    assert resolve_encoder(str(tmp_path / "beit3.yaml"), EncoderConfig(kind="clip")).config.kind == "beit3"
    torch.save(enc.model.state_dict(), tmp_path / "clip.pt")
    from_file = resolve_encoder(str(tmp_path / "clip.pt"), EncoderConfig(kind="clip"))
    assert from_file.config.clip.pretrained == str(tmp_path / "clip.pt") and not from_file.random_init


def test_open_clip_tags_and_errors(tmp_path):
    tag = resolve_encoder("ViT-B-32:openai", EncoderConfig(kind="beit3"))
    assert (tag.config.kind, tag.config.clip.model, tag.config.clip.pretrained) == ("clip", "ViT-B-32", "openai")
    assert tag.checkpoint_hash == "tag:ViT-B-32:openai"
    assert resolve_encoder("ViT-B-32", EncoderConfig()).random_init
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_encoder(str(tmp_path / "nope" / "enc"), EncoderConfig())
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_encoder(str(tmp_path / "missing.pt"), EncoderConfig())
    with pytest.raises(ConfigError, match="not a stage-2 encoder dir"):
        resolve_encoder(str(tmp_path), EncoderConfig())
    with pytest.raises(ConfigError, match="fused image\\+text pass"):
        encoder_for(FeaturesConfig(method="beit3", encoder="ViT-B-32:openai"))
    assert encoder_for(FeaturesConfig(method="beit3")).config.kind == "beit3"   # random init picks BEiT3


def test_job_reports_a_bad_config_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "jobs" / "extract_features.py"), "method=beit3",
                           "encoder=ViT-B-32:openai", f"tracking.root={tmp_path}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: method beit3 needs an encoder with a fused")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()
