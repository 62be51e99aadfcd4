"""Pre-training objectives: ITC (open_clip's ClipLoss, gathered across workers) and AlignRec's ICA = MLM + MIM."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from raymmrec.encoders import EncoderConfig, MultimodalEncoder, create_encoder
from raymmrec.encoders.base import Preprocess
from raymmrec.errors import ConfigError

Objective = Literal["mlm_mim", "itc", "itc_mlm_mim"]
IGNORE = -100   # label of text positions MLM does not score


@dataclass
class LossConfig:
    """Weights and masking of the objectives (AlignRec appendix: 15% of text tokens, 40% of image patches)."""

    mlm_ratio: float = 0.15
    mim_ratio: float = 0.40
    mim_target: Literal["pixels", "teacher"] = "pixels"   # normalised patch pixels, or a frozen teacher's features
    teacher: EncoderConfig = field(default_factory=lambda: EncoderConfig(kind="clip"))
    itc_weight: float = 1.0
    mlm_weight: float = 1.0
    mim_weight: float = 1.0


def objective_parts(objective: str) -> tuple[bool, bool]:
    """(uses ITC, uses MLM + MIM) for an objective name."""
    if objective not in ("mlm_mim", "itc", "itc_mlm_mim"):
        raise ConfigError(f"objective: expected one of mlm_mim, itc, itc_mlm_mim, got {objective!r}")
    return "itc" in objective, "mlm" in objective


def patchify(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """`[B, C, H, W]` → `[B, n_patches, patch*patch*C]`, patches in row-major order (the ViT / BEiT order)."""
    b, c, h, w = pixels.shape
    x = pixels.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def normalised_patch_pixels(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """MAE's MIM target: each patch's pixels standardised by that patch's own mean and variance."""
    p = patchify(pixels.float(), patch)
    return (p - p.mean(-1, keepdim=True)) / (p.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()


class PatchTeacher(nn.Module):
    """A frozen image encoder whose patch features are the MIM targets, re-sampled to the student's patch grid."""

    def __init__(self, cfg: EncoderConfig, student: Preprocess):
        super().__init__()
        self.encoder = create_encoder(cfg).eval().requires_grad_(False)
        self.student = student
        t = self.encoder.preprocess
        self.size = t.image_size
        self.register_buffer("s_mean", torch.tensor(student.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("s_std", torch.tensor(student.std).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("t_mean", torch.tensor(t.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("t_std", torch.tensor(t.std).view(1, -1, 1, 1), persistent=False)
        with torch.no_grad():
            probe = torch.zeros(1, 3, self.size, self.size)
            self.dim = int(self.encoder.encode_image_patches(probe).shape[-1])

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        raw = pixels.float() * self.s_std + self.s_mean
        if raw.shape[-1] != self.size:
            raw = F.interpolate(raw, size=(self.size, self.size), mode="bicubic", align_corners=False)
        feats = self.encoder.encode_image_patches((raw - self.t_mean) / self.t_std).float()
        g_t = int(math.isqrt(feats.shape[1]))
        g_s = self.student.image_size // self.student.patch_size
        if g_t != g_s:
            grid = feats.transpose(1, 2).reshape(feats.shape[0], -1, g_t, g_t)
            grid = F.interpolate(grid, size=(g_s, g_s), mode="bilinear", align_corners=False)
            feats = grid.flatten(2).transpose(1, 2)
        return feats


class PretrainModel(nn.Module):
    """The encoder plus the heads its objectives need; `forward(batch)` returns the weighted loss and its parts."""

    def __init__(self, encoder: MultimodalEncoder, objective: str, cfg: LossConfig,
                 rank: int = 0, world_size: int = 1, teacher: PatchTeacher | None = None):
        super().__init__()
        self.encoder = encoder
        self.cfg = cfg
        self.use_itc, self.use_ica = objective_parts(objective)
        if self.use_ica and not encoder.supports_fused:
            raise ConfigError(f"objective {objective} needs a fused encoder (beit3); {encoder.kind} only supports itc")
        if self.use_ica and cfg.mim_target == "teacher" and teacher is None:
            raise ConfigError("losses.mim_target=teacher needs a teacher (losses.teacher)")
        # the teacher is frozen and outside the optimiser: kept off the module tree so DeepSpeed does not shard it
        self._teacher = [teacher] if teacher is not None and cfg.mim_target == "teacher" else []
        if self.use_itc:
            from open_clip.loss import ClipLoss

            self.itc_loss = ClipLoss(local_loss=True, gather_with_grad=True, rank=rank, world_size=world_size)
            self.logit_scale = None if encoder.logit_scale_param() is not None \
                else nn.Parameter(torch.full((1,), math.log(1 / 0.07)))   # not 0-dim: DeepSpeed broadcasts it
        if self.use_ica:
            pp = encoder.preprocess
            self.patch = pp.patch_size
            self.mlm_head = nn.Linear(encoder.width, encoder.vocab_size)
            target_dim = self._teacher[0].dim if self._teacher else pp.patch_size ** 2 * 3
            self.mim_head = nn.Linear(encoder.width, target_dim)
            for head in (self.mlm_head, self.mim_head):
                nn.init.trunc_normal_(head.weight, std=0.02, a=-0.02, b=0.02)
                nn.init.zeros_(head.bias)

    def prepare_for_zero3(self) -> None:
        """Register parameters read outside their owner's forward (ZeRO-3 only)."""
        from deepspeed.runtime.zero.partition_parameters import register_external_parameter

        self.encoder.prepare_for_zero3()
        scale = self.encoder.logit_scale_param()
        if self.use_itc and scale is not None:
            register_external_parameter(self, scale)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        parts: dict[str, torch.Tensor] = {}
        total = 0.0
        if self.use_itc:
            parts["itc"] = self._itc(batch)
            total = total + self.cfg.itc_weight * parts["itc"]
        if self.use_ica:
            parts["mlm"] = self._mlm(batch)
            parts["mim"] = self._mim(batch)
            total = total + self.cfg.mlm_weight * parts["mlm"] + self.cfg.mim_weight * parts["mim"]
        parts["loss"] = total
        return parts

    def _itc(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        img = self.encoder.encode_image(batch["pixels"], normalize=True).float()
        txt = self.encoder.encode_text(batch["tokens"], normalize=True).float()
        scale = self.logit_scale if self.logit_scale is not None else self.encoder.logit_scale_param()
        # CLIP clamps the learned temperature at 100
        return self.itc_loss(img, txt, scale.float().exp().clamp(max=100.0))

    def _mlm(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predict masked text tokens from the rest of the text and the whole image."""
        out = self.encoder.fused_tokens(batch["pixels"], batch["mlm_tokens"])
        text = out.hidden[:, out.n_vision:]
        labels = batch["mlm_labels"]
        picked = labels != IGNORE
        logits = self.mlm_head(text[picked]).float()
        return F.cross_entropy(logits, labels[picked], reduction="sum") / picked.sum().clamp(min=1)

    def _mim(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predict masked image patches from the rest of the image and the whole text."""
        mask = batch["image_mask"].bool()
        out = self.encoder.fused_tokens(batch["pixels"], batch["tokens"], image_mask=mask)
        patches = out.hidden[:, 1:out.n_vision]
        pred = self.mim_head(patches[mask]).float()
        n = mask.sum().clamp(min=1)
        if self._teacher:
            target = self._teacher[0](batch["pixels"])[mask]
            return (1 - F.cosine_similarity(pred, target, dim=-1)).sum() / n
        target = normalised_patch_pixels(batch["pixels"], self.patch)[mask]
        return ((pred - target) ** 2).mean(-1).sum() / n
