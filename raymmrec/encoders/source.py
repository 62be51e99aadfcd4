"""Which encoder stage 3 runs: a stage-2 encoder dir, an open_clip tag, a checkpoint file or a random-init config."""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from raymmrec.config import config_hash, from_dict, load_yaml, to_dict
from raymmrec.encoders import EncoderConfig, MultimodalEncoder, create_encoder, load_encoder, read_encoder_config
from raymmrec.encoders.factory import CONFIG_FILE, WEIGHTS_FILE
from raymmrec.errors import ConfigError

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


@dataclass(frozen=True)
class EncoderSource:
    """A resolved encoder: how to build it in every actor and how the manifest names it."""

    spec: str                  # what the user gave
    config: EncoderConfig      # architecture + weights source (random init when it names none)
    stage_dir: str = ""        # a stage-2 output dir: weights come from its encoder.pt
    checkpoint_hash: str = ""  # sha256 of the weights file, the tag, or "random:<config hash>:seed<n>"
    seed: int = 0              # torch seed before building: every actor gets the same random init

    @property
    def random_init(self) -> bool:
        return self.checkpoint_hash.startswith("random:")

    def build(self) -> MultimodalEncoder:
        """The encoder in eval mode (identical weights in every process)."""
        import torch

        if self.stage_dir:
            return load_encoder(self.stage_dir)
        torch.manual_seed(self.seed)
        return create_encoder(self.config).eval()

    def describe(self) -> dict:
        """What the manifest records about the encoder."""
        cfg = self.config
        model = cfg.clip.model if cfg.kind == "clip" else f"beit3-{cfg.beit3.size}"
        return {"spec": self.spec, "kind": cfg.kind, "model": model, "stage_dir": self.stage_dir,
                "random_init": self.random_init, "checkpoint_hash": self.checkpoint_hash, "config": to_dict(cfg)}


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """First 16 hex digits of the file's sha256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def _weights_source(cfg: EncoderConfig) -> str:
    return cfg.clip.pretrained if cfg.kind == "clip" else cfg.beit3.checkpoint


def _with_weights(cfg: EncoderConfig, source: str) -> EncoderConfig:
    out = copy.deepcopy(cfg)
    if out.kind == "clip":
        out.clip.pretrained = source
    else:
        out.beit3.checkpoint = source
    return out


def _from_config(spec: str, cfg: EncoderConfig, seed: int) -> EncoderSource:
    weights = _weights_source(cfg)
    if not weights:
        return EncoderSource(spec, cfg, checkpoint_hash=f"random:{config_hash(cfg)}:seed{seed}", seed=seed)
    if Path(weights).is_dir():
        return resolve_encoder(weights, cfg, seed)
    digest = file_hash(weights) if Path(weights).is_file() else f"tag:{cfg.clip.model}:{weights}"
    return EncoderSource(spec, cfg, checkpoint_hash=digest, seed=seed)


def resolve_encoder(spec: str, init: EncoderConfig, seed: int = 0) -> EncoderSource:
    """Resolve `encoder=<spec>`.

    '' or 'random' → `init` (random init unless it names weights); a stage-2 dir (encoder.json + encoder.pt);
    a .yaml / .json EncoderConfig file; a checkpoint file (.pt/.pth/...) loaded into `init`'s architecture;
    '<open_clip model>:<tag>' (e.g. ViT-B-32:openai) or a bare open_clip model name (random init).
    """
    spec = spec.strip()
    if spec in ("", "random"):
        return _from_config(spec or "random", init, seed)
    path = Path(spec)
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ConfigError(f"encoder '{spec}': a directory without {CONFIG_FILE} (not a stage-2 encoder dir)")
        cfg = read_encoder_config(path)
        return EncoderSource(spec, cfg, stage_dir=str(path), checkpoint_hash=file_hash(path / WEIGHTS_FILE), seed=seed)
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        data = load_yaml(path) if path.suffix != ".json" else json.loads(path.read_text())
        return _from_config(spec, from_dict(EncoderConfig, data, prefix="encoder."), seed)
    if path.suffix in _CHECKPOINT_SUFFIXES:
        if not path.is_file():
            raise ConfigError(f"encoder checkpoint '{spec}' does not exist")
        return EncoderSource(spec, _with_weights(init, str(path)), checkpoint_hash=file_hash(path), seed=seed)
    if "/" in spec and not spec.startswith(("hf-hub:", "local-dir:")):
        raise ConfigError(f"encoder '{spec}' does not exist (expected a stage-2 dir, a config or checkpoint file, "
                          f"or an open_clip '<model>:<tag>')")
    model, tag = spec, ""
    if not spec.startswith(("hf-hub:", "local-dir:")) and ":" in spec:
        model, tag = spec.split(":", 1)
    cfg = copy.deepcopy(init)
    cfg.kind = "clip"
    cfg.clip.model, cfg.clip.pretrained = model, tag
    return _from_config(spec, cfg, seed)
