"""BEiT3 encoder (sizes tiny / base / large) on raymmrec's multiway transformer; loads official checkpoints as-is."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.encoders.base import FusedTokens, MultimodalEncoder, Preprocess
from raymmrec.encoders.multiway import POSITION_OFFSET, BEiT3
from raymmrec.encoders.tokenizers import bundled_bpe, load_hf_tokenizer
from raymmrec.errors import ConfigError

log = logging.getLogger(__name__)

# Official BEiT3 sizes (unilm/beit3 `_get_base_config` / `_get_large_config`); `tiny` is for tests and laptops.
BEIT3_SIZES: dict[str, dict] = {
    "tiny": dict(width=64, depth=2, heads=4, mlp_ratio=4.0, img_size=32, patch_size=8, context_length=32),
    "base": dict(width=768, depth=12, heads=12, mlp_ratio=4.0, img_size=224, patch_size=16, context_length=128),
    "large": dict(width=1024, depth=24, heads=16, mlp_ratio=4.0, img_size=224, patch_size=16, context_length=128),
}
# BEiT3 normalises images with mean = std = 0.5 (timm's IMAGENET_INCEPTION_MEAN / STD).
BEIT3_MEAN = (0.5, 0.5, 0.5)
BEIT3_STD = (0.5, 0.5, 0.5)
# Released checkpoints carry 1024 text positions (torchscale's max_source_positions default).
BEIT3_TEXT_POSITIONS = 1024


@dataclass
class Beit3Config:
    """A BEiT3 encoder. Zero-valued sizes take the `size` preset; `checkpoint` '' means random init."""

    size: Literal["tiny", "base", "large"] = "tiny"
    img_size: int = 0
    patch_size: int = 0
    context_length: int = 0       # text tokens per item (AlignRec: 128)
    vocab_size: int = 0           # 0: the tokenizer's size (official checkpoints: 64010 with XLM-R's beit3.spm)
    vl_layers: int = 0            # top layers with a vision-language FFN expert for fused input (official: 0)
    head_dim: int = 0             # >0: contrastive heads vision_head / language_head (official retrieval names)
    drop_path_rate: float = 0.0
    # '' = open_clip's bundled BPE (+<mask>, 49409 ids; works offline); else XLM-R sentencepiece file, dir or hub id
    tokenizer: str = ""
    checkpoint: str = ""          # official BEiT3 .pth (path or URL), or a stage-2 output dir


def resolved(cfg: Beit3Config) -> dict:
    """The size preset with the config's non-zero overrides applied."""
    if cfg.size not in BEIT3_SIZES:
        raise ConfigError(f"beit3.size: expected one of {', '.join(BEIT3_SIZES)}, got {cfg.size!r}")
    out = dict(BEIT3_SIZES[cfg.size])
    for key in ("img_size", "patch_size", "context_length"):
        if getattr(cfg, key):
            out[key] = getattr(cfg, key)
    if out["img_size"] % out["patch_size"]:
        raise ConfigError(f"beit3.img_size {out['img_size']} is not a multiple of beit3.patch_size {out['patch_size']}")
    if not 0 <= cfg.vl_layers <= out["depth"]:
        raise ConfigError(f"beit3.vl_layers must be between 0 and {out['depth']}, got {cfg.vl_layers}")
    return out


def beit3_preprocess(cfg: Beit3Config) -> Preprocess:
    """Transforms and tokenizer of a BEiT3 config (no model needed)."""
    from open_clip.transform import image_transform

    size = resolved(cfg)
    ctx = size["context_length"]
    tokenizer = load_hf_tokenizer(cfg.tokenizer, ctx) if cfg.tokenizer else bundled_bpe(ctx, with_mask=True)
    if tokenizer.mask_id is None:
        raise ConfigError(f"beit3.tokenizer '{cfg.tokenizer}' has no mask token (needed for MLM)")
    img = size["img_size"]
    return Preprocess(
        image_transform=image_transform(img, is_train=False, mean=BEIT3_MEAN, std=BEIT3_STD),
        train_transform=image_transform(img, is_train=True, mean=BEIT3_MEAN, std=BEIT3_STD),
        tokenizer=tokenizer, image_size=img, patch_size=size["patch_size"], mean=BEIT3_MEAN, std=BEIT3_STD,
    )


class Beit3Encoder(MultimodalEncoder):
    """BEiT3: `encode_image` / `encode_text` are the CLS of single-modality passes (through the contrastive heads
    when `head_dim` > 0); `encode_fused` is the CLS of the image+text pass (AlignRec's unified item feature)."""

    kind = "beit3"

    def __init__(self, cfg: Beit3Config, load_weights: bool = True):
        super().__init__()
        self.beit3_config = cfg
        size = resolved(cfg)
        self.preprocess = beit3_preprocess(cfg)
        vocab = cfg.vocab_size or self.preprocess.tokenizer.vocab_size
        if vocab < self.preprocess.tokenizer.vocab_size:
            raise ConfigError(f"beit3.vocab_size {vocab} is smaller than the tokenizer's "
                              f"{self.preprocess.tokenizer.vocab_size} ids")
        self.vocab_size = vocab
        self.width = size["width"]
        self.beit3 = BEiT3(vocab_size=vocab, dim=size["width"], depth=size["depth"], heads=size["heads"],
                           mlp_ratio=size["mlp_ratio"], img_size=size["img_size"], patch_size=size["patch_size"],
                           max_text_positions=max(BEIT3_TEXT_POSITIONS, size["context_length"] + POSITION_OFFSET),
                           drop_path_rate=cfg.drop_path_rate, vl_layers=cfg.vl_layers)
        if cfg.head_dim:
            self.vision_head = nn.Linear(self.width, cfg.head_dim, bias=False)
            self.language_head = nn.Linear(self.width, cfg.head_dim, bias=False)
            # [1]-shaped, not 0-dim: DeepSpeed cannot broadcast 0-dim parameters
            self.logit_scale = nn.Parameter(torch.full((1,), math.log(1 / 0.07)))
            nn.init.trunc_normal_(self.vision_head.weight, std=0.02, a=-0.02, b=0.02)
            nn.init.trunc_normal_(self.language_head.weight, std=0.02, a=-0.02, b=0.02)
        else:
            self.vision_head = self.language_head = None
            self.logit_scale = None
        self.embed_dim = cfg.head_dim or self.width
        self.fused_dim = self.width
        if load_weights and cfg.checkpoint and not _is_stage_output(cfg.checkpoint):
            load_official_checkpoint(self, cfg.checkpoint)

    def logit_scale_param(self) -> nn.Parameter | None:
        return self.logit_scale

    def _text_padding(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.preprocess.tokenizer.padding_mask(tokens)

    def _encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.beit3(pixels=pixels)
        cls = hidden[:, 0]
        return self.vision_head(cls) if self.vision_head is not None else cls

    def _encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.beit3(text_tokens=tokens, text_padding_mask=self._text_padding(tokens))
        cls = hidden[:, 0]
        return self.language_head(cls) if self.language_head is not None else cls

    def _encode_fused(self, pixels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self._fused_tokens(pixels, tokens, None).hidden[:, 0]

    def _fused_tokens(self, pixels: torch.Tensor, tokens: torch.Tensor,
                      image_mask: torch.Tensor | None) -> FusedTokens:
        hidden, n_vision = self.beit3(text_tokens=tokens, pixels=pixels,
                                      text_padding_mask=self._text_padding(tokens), image_mask=image_mask)
        return FusedTokens(hidden, n_vision)

    def _image_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.beit3(pixels=pixels)
        return hidden[:, 1:]


def _is_stage_output(path: str) -> bool:
    from pathlib import Path

    return Path(path).is_dir()


def load_official_checkpoint(encoder: Beit3Encoder, source: str) -> None:
    """Load an official BEiT3 / torchscale checkpoint (`beit3.*` keys, optionally under 'model') into `encoder`."""
    try:
        if source.startswith(("http://", "https://")):
            raw = torch.hub.load_state_dict_from_url(source, map_location="cpu", weights_only=True)
        else:
            raw = torch.load(source, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"beit3.checkpoint '{source}': cannot read ({str(exc).splitlines()[0]})") from None
    state = raw.get("model", raw.get("module", raw)) if isinstance(raw, dict) else raw
    own = encoder.state_dict()
    state = {k: v for k, v in state.items() if k in own or ".ffn.C." in k}
    if not any(k.startswith("beit3.") for k in state):
        raise ConfigError(f"beit3.checkpoint '{source}': no 'beit3.*' weights found (not a BEiT3 checkpoint?)")
    _fit_vision_positions(state, own)
    for key in own:
        # a checkpoint without vision-language experts seeds them from the language expert
        if ".ffn.C." in key and key not in state:
            src = key.replace(".ffn.C.", ".ffn.B.")
            if src in state:
                state[key] = state[src].clone()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            hint = (" (set beit3.tokenizer to the XLM-R sentencepiece model and beit3.vocab_size=64010)"
                    if key == "beit3.text_embed.weight" else "")
            raise ConfigError(f"beit3.checkpoint '{source}': {key} has shape {tuple(value.shape)}, "
                              f"the model expects {tuple(own[key].shape)}{hint}")
    result = encoder.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k.startswith("beit3.")]
    if missing:
        raise ConfigError(f"beit3.checkpoint '{source}': missing {len(missing)} backbone weights, e.g. '{missing[0]}'")
    if result.missing_keys:
        log.info("beit3 checkpoint %s: heads initialised fresh: %s", source, result.missing_keys)


def _fit_vision_positions(state: dict, own: dict) -> None:
    """Bicubic-resize the checkpoint's patch positions when its image / patch grid differs from the model's."""
    key = "beit3.encoder.embed_positions.A.weight"
    if key not in state or state[key].shape == own[key].shape:
        return
    extra = POSITION_OFFSET + 1   # two unused Fairseq slots + CLS
    old, new = state[key], own[key]
    g_old, g_new = int(math.isqrt(old.shape[0] - extra)), int(math.isqrt(new.shape[0] - extra))
    grid = old[extra:].reshape(1, g_old, g_old, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(g_new, g_new), mode="bicubic", align_corners=False)
    state[key] = torch.cat([old[:extra], grid.permute(0, 2, 3, 1).reshape(g_new * g_new, -1).to(old.dtype)])
