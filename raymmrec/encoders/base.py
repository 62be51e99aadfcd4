"""The encoder protocol every stage uses: image, text and (where supported) fused image+text embeddings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.encoders.tokenizers import TextTokenizer
from raymmrec.errors import ConfigError


@dataclass
class Preprocess:
    """What turns raw inputs into encoder inputs; built from a config alone, so CPU data tasks need no model."""

    image_transform: Callable[[Any], torch.Tensor]   # PIL image → [3, H, W] (inference: resize, crop, normalise)
    train_transform: Callable[[Any], torch.Tensor]   # the same with augmentation
    tokenizer: TextTokenizer
    image_size: int
    patch_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


class FusedTokens(NamedTuple):
    """Hidden states of a fused pass: `[B, 1 + n_patches + n_text, D]`, vision (CLS first) then text."""

    hidden: torch.Tensor
    n_vision: int


class MultimodalEncoder(nn.Module):
    """Base of `clip` and `beit3` encoders.

    Public API (all take batched tensors made by `preprocess`):
      encode_image(pixels [B,3,H,W]) → [B, embed_dim]
      encode_text(tokens [B,L] int64) → [B, embed_dim]
      encode_fused(pixels, tokens) → [B, fused_dim]   (only when `supports_fused`)
      fused_tokens(pixels, tokens, image_mask) → FusedTokens (pre-training heads)
      encode_image_patches(pixels) → [B, n_patches, D]
    Every call goes through `forward`, so DeepSpeed ZeRO-3 gathers the parameters it needs.
    """

    kind: str = ""
    embed_dim: int = 0
    fused_dim: int | None = None
    width: int = 0
    preprocess: Preprocess
    config: Any = None   # the EncoderConfig it was built from (set by the factory)

    @property
    def supports_fused(self) -> bool:
        return self.fused_dim is not None

    @property
    def tokenizer(self) -> TextTokenizer:
        return self.preprocess.tokenizer

    @property
    def image_transform(self) -> Callable[[Any], torch.Tensor]:
        return self.preprocess.image_transform

    def forward(self, mode: str, pixels: torch.Tensor | None = None, tokens: torch.Tensor | None = None,
                image_mask: torch.Tensor | None = None):
        if mode == "image":
            return self._encode_image(pixels)
        if mode == "text":
            return self._encode_text(tokens)
        if mode == "fused":
            return self._encode_fused(pixels, tokens)
        if mode == "fused_tokens":
            return self._fused_tokens(pixels, tokens, image_mask)
        if mode == "image_patches":
            return self._image_patches(pixels)
        raise ValueError(f"unknown encoder mode {mode!r}")

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Image embeddings `[B, embed_dim]`."""
        out = self(mode="image", pixels=pixels)
        return F.normalize(out, dim=-1) if normalize else out

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Text embeddings `[B, embed_dim]`."""
        out = self(mode="text", tokens=tokens)
        return F.normalize(out, dim=-1) if normalize else out

    def encode_fused(self, pixels: torch.Tensor, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """One joint embedding `[B, fused_dim]` of an image and its text (BEiT3: CLS of the fused pass)."""
        self._require_fused()
        out = self(mode="fused", pixels=pixels, tokens=tokens)
        return F.normalize(out, dim=-1) if normalize else out

    def fused_tokens(self, pixels: torch.Tensor, tokens: torch.Tensor,
                     image_mask: torch.Tensor | None = None) -> FusedTokens:
        """All hidden states of a fused pass; `image_mask` [B, n_patches] swaps patches for the mask token."""
        self._require_fused()
        return self(mode="fused_tokens", pixels=pixels, tokens=tokens, image_mask=image_mask)

    def encode_image_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        """Per-patch image features `[B, n_patches, D]` (e.g. targets of a frozen MIM teacher)."""
        return self(mode="image_patches", pixels=pixels)

    def logit_scale_param(self) -> nn.Parameter | None:
        """The encoder's own contrastive temperature (log scale), when it has one."""
        return None

    def prepare_for_zero3(self) -> None:
        """Register parameters read outside their module's forward, so ZeRO-3 gathers them (called before DeepSpeed)."""

    def _require_fused(self) -> None:
        if not self.supports_fused:
            raise ConfigError(f"encoder '{self.kind}' has no fused image+text pass (use beit3 for fused features)")

    def _encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _encode_fused(self, pixels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _fused_tokens(self, pixels: torch.Tensor, tokens: torch.Tensor,
                      image_mask: torch.Tensor | None) -> FusedTokens:
        raise NotImplementedError

    def _image_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def register_zero3_external(owner: nn.Module, module: nn.Module) -> None:
    """Tell ZeRO-3 to gather `module`'s own parameters whenever `owner` runs (they are read outside `module.forward`)."""
    from deepspeed.runtime.zero.partition_parameters import register_external_parameter

    for p in module.parameters(recurse=False):
        register_external_parameter(owner, p)
