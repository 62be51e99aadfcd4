"""Build encoders from configs (open_clip-style factory) and save / load the stage-2 output (encoder.pt + encoder.json)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from raymmrec.config import from_dict, to_dict
from raymmrec.encoders.base import MultimodalEncoder, Preprocess
from raymmrec.encoders.beit3 import Beit3Config, Beit3Encoder, beit3_preprocess
from raymmrec.encoders.clip import ClipConfig, ClipEncoder, clip_preprocess
from raymmrec.errors import ConfigError

WEIGHTS_FILE = "encoder.pt"
CONFIG_FILE = "encoder.json"


@dataclass
class EncoderConfig:
    """Which encoder (`kind`) and its settings; only the section named by `kind` is used."""

    kind: Literal["beit3", "clip"] = "beit3"
    beit3: Beit3Config = field(default_factory=Beit3Config)
    clip: ClipConfig = field(default_factory=ClipConfig)


def _weights_source(cfg: EncoderConfig) -> str:
    return cfg.clip.pretrained if cfg.kind == "clip" else cfg.beit3.checkpoint


def create_encoder(cfg: EncoderConfig, load_weights: bool = True) -> MultimodalEncoder:
    """An encoder for `cfg`: random init, pretrained tag / official checkpoint, or a stage-2 output dir's weights."""
    source = _weights_source(cfg)
    stage_output = load_weights and bool(source) and Path(source).is_dir()
    if stage_output:
        saved = read_encoder_config(source)
        if saved.kind != cfg.kind:
            raise ConfigError(f"encoder dir '{source}' holds a {saved.kind} encoder, the config asks for {cfg.kind}")
    if cfg.kind == "clip":
        encoder: MultimodalEncoder = ClipEncoder(cfg.clip, load_weights=load_weights and not stage_output)
    elif cfg.kind == "beit3":
        encoder = Beit3Encoder(cfg.beit3, load_weights=load_weights and not stage_output)
    else:
        raise ConfigError(f"encoder kind: expected beit3 or clip, got {cfg.kind!r}")
    encoder.config = cfg
    if stage_output:
        _load_weights(encoder, Path(source) / WEIGHTS_FILE)
    return encoder


def create_preprocess(cfg: EncoderConfig) -> Preprocess:
    """Image transforms and tokenizer of `cfg`, without building the model (for CPU data tasks)."""
    if cfg.kind == "clip":
        return clip_preprocess(cfg.clip)
    return beit3_preprocess(cfg.beit3)


def save_encoder(encoder: MultimodalEncoder, out_dir: str | Path,
                 state_dict: dict[str, torch.Tensor] | None = None, extra: dict | None = None) -> Path:
    """Write `<out_dir>/encoder.pt` (fp32 state dict) and `encoder.json` (config + dims); returns the dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = state_dict if state_dict is not None else encoder.state_dict()
    torch.save({k: v.detach().float().cpu() if v.is_floating_point() else v.cpu() for k, v in state.items()},
               out / WEIGHTS_FILE)
    meta = {
        "encoder": to_dict(encoder.config),
        "kind": encoder.kind,
        "embed_dim": encoder.embed_dim,
        "fused_dim": encoder.fused_dim,
        "image_size": encoder.preprocess.image_size,
        "context_length": encoder.preprocess.tokenizer.context_length,
        **(extra or {}),
    }
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    return out


def read_encoder_config(path: str | Path) -> EncoderConfig:
    """The EncoderConfig saved in a stage-2 output dir."""
    p = Path(path) / CONFIG_FILE
    if not p.is_file():
        raise ConfigError(f"'{path}' is not an encoder dir (no {CONFIG_FILE})")
    try:
        meta = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"'{p}': not valid JSON ({exc.msg})") from None
    return from_dict(EncoderConfig, meta["encoder"])


def load_encoder(path: str | Path) -> MultimodalEncoder:
    """Rebuild the encoder written by `save_encoder` (stage 3 and end-to-end training start here)."""
    cfg = read_encoder_config(path)
    encoder = create_encoder(cfg, load_weights=False)
    _load_weights(encoder, Path(path) / WEIGHTS_FILE)
    return encoder.eval()


def _load_weights(encoder: MultimodalEncoder, file: Path) -> None:
    if not file.is_file():
        raise ConfigError(f"encoder weights '{file}' do not exist")
    state = torch.load(file, map_location="cpu", weights_only=True)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"encoder weights '{file}' do not fit the saved config: {str(exc).splitlines()[0]}") from None
