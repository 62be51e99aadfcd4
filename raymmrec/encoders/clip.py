"""CLIP encoders from open_clip (any architecture; pretrained tag, local checkpoint or random init), with Long-CLIP."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from raymmrec.encoders.base import MultimodalEncoder, Preprocess, register_zero3_external
from raymmrec.encoders.tokenizers import BpeTokenizer
from raymmrec.errors import ConfigError

# Long-CLIP (Zhang et al. 2024): keep the first 20 well-trained positions, stretch the other 57 four-fold → 248.
LONG_CLIP_KEEP = 20
LONG_CLIP_FACTOR = 4
LONG_CLIP_CONTEXT = LONG_CLIP_KEEP + (77 - LONG_CLIP_KEEP) * LONG_CLIP_FACTOR

_CONFIG_DIR = Path(__file__).parent / "model_configs"
_registered = False


@dataclass
class ClipConfig:
    """An open_clip model. `pretrained`: open_clip tag, local checkpoint file, or '' for random init."""

    model: str = "raymmrec-tiny-clip"   # any open_clip name (ViT-B-16, ViT-L-14, hf-hub:..., local-dir:...)
    pretrained: str = ""
    long_text: bool = False             # Long-CLIP positional stretch: 77 → 248 text tokens
    context_length: int = 0             # 0: the model's own (248 with long_text)


def register_model_configs() -> None:
    """Make raymmrec's small test architectures (model_configs/*.json) known to open_clip by name."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(_CONFIG_DIR)
        _registered = True


def stretch_positions(pos: torch.Tensor, keep: int = LONG_CLIP_KEEP, factor: int = LONG_CLIP_FACTOR) -> torch.Tensor:
    """Long-CLIP's knowledge-preserving stretch: rows < `keep` unchanged, the rest linearly interpolated `factor`×."""
    head, tail = pos[:keep], pos[keep:]
    if tail.shape[0] < 2:
        raise ConfigError(f"Long-CLIP stretch needs more than {keep + 1} positions, the model has {pos.shape[0]}")
    # the last row has no successor: extrapolate along the last step, as Long-CLIP does
    successor = torch.cat([tail[1:], (2 * tail[-1] - tail[-2]).unsqueeze(0)])
    frac = torch.arange(factor, dtype=pos.dtype, device=pos.device) / factor
    stretched = tail.unsqueeze(1) + frac.view(1, -1, 1) * (successor - tail).unsqueeze(1)
    return torch.cat([head, stretched.reshape(-1, pos.shape[1])])


def stretch_text_context(model: nn.Module, keep: int = LONG_CLIP_KEEP, factor: int = LONG_CLIP_FACTOR) -> int:
    """Apply `stretch_positions` to an open_clip model's text tower in place; returns the new context length."""
    tower = model if hasattr(model, "positional_embedding") and hasattr(model, "token_embedding") \
        else getattr(model, "text", None)
    if tower is None or not isinstance(getattr(tower, "positional_embedding", None), nn.Parameter):
        raise ConfigError("Long-CLIP stretch needs an open_clip text transformer with learned positions "
                          "(not a Hugging Face text tower)")
    new = stretch_positions(tower.positional_embedding.data, keep, factor)
    tower.positional_embedding = nn.Parameter(new)
    n = new.shape[0]
    if getattr(tower, "attn_mask", None) is not None:
        tower.register_buffer("attn_mask", torch.full((n, n), float("-inf")).triu_(1), persistent=False)
    for obj in (model, tower):
        if hasattr(obj, "context_length"):
            obj.context_length = n
    if hasattr(tower, "num_pos"):
        tower.num_pos = n
    return n


def clip_preprocess(cfg: ClipConfig, model: nn.Module | None = None) -> Preprocess:
    """Transforms and tokenizer of `cfg`; reads open_clip's configs only (no model) unless one is given."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    register_model_configs()
    model_cfg = open_clip.get_model_config(cfg.model)
    if model is None and model_cfg is None:
        # hf-hub: / local-dir: names carry their config elsewhere: let open_clip read it
        model = _create_open_clip(cfg, load_weights=False)
    if model is not None:
        base = dict(model.visual.preprocess_cfg)
        patch = _patch_size(model_cfg) if model_cfg else _model_patch_size(model)
        text_ctx = int(model.context_length)
    else:
        base = asdict(PreprocessCfg())
        base["size"] = model_cfg["vision_cfg"].get("image_size", 224)
        patch = _patch_size(model_cfg)
        text_ctx = int(model_cfg["text_cfg"].get("context_length", 77))
        if cfg.long_text:
            text_ctx = LONG_CLIP_KEEP + (text_ctx - LONG_CLIP_KEEP) * LONG_CLIP_FACTOR
    if cfg.pretrained and not Path(cfg.pretrained).exists():
        # a tag's normalisation (mean / std) travels with the tag, not the architecture
        size = base["size"]
        base = merge_preprocess_dict(base, open_clip.get_pretrained_cfg(cfg.model, cfg.pretrained))
        base["size"] = size
    pp = PreprocessCfg(**{k: v for k, v in base.items() if k in asdict(PreprocessCfg())})
    ctx = cfg.context_length or text_ctx
    inner = open_clip.get_tokenizer(cfg.model, context_length=ctx)
    size = pp.size if isinstance(pp.size, int) else pp.size[0]
    return Preprocess(
        image_transform=image_transform_v2(pp, is_train=False),
        train_transform=image_transform_v2(pp, is_train=True),
        tokenizer=BpeTokenizer(inner, ctx),
        image_size=int(size), patch_size=patch, mean=tuple(pp.mean), std=tuple(pp.std),
    )


def _patch_size(model_cfg: dict) -> int:
    return int(model_cfg.get("vision_cfg", {}).get("patch_size", 16))


def _model_patch_size(model: nn.Module) -> int:
    ps = getattr(model.visual, "patch_size", 16)
    return int(ps[0] if isinstance(ps, (tuple, list)) else ps)


def _create_open_clip(cfg: ClipConfig, load_weights: bool) -> nn.Module:
    import open_clip

    register_model_configs()
    pretrained = cfg.pretrained if load_weights and cfg.pretrained else None
    try:
        # a [1]-shaped temperature: DeepSpeed cannot broadcast 0-dim parameters (open_clip reshapes on load)
        return open_clip.create_model(cfg.model, pretrained=pretrained, load_weights=load_weights,
                                      nonscalar_logit_scale=True)
    except (RuntimeError, FileNotFoundError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"clip.model '{cfg.model}' (pretrained '{cfg.pretrained}'): {msg}") from None


class ClipEncoder(MultimodalEncoder):
    """Dual-stream CLIP: `encode_image` / `encode_text` are open_clip's projected features; no fused pass."""

    kind = "clip"

    def __init__(self, cfg: ClipConfig, load_weights: bool = True):
        super().__init__()
        self.clip_config = cfg
        self.model = _create_open_clip(cfg, load_weights)
        if cfg.long_text:
            stretch_text_context(self.model)
        self.preprocess = clip_preprocess(cfg, self.model)
        self.embed_dim = int(self.model.visual.output_dim)
        trunk = getattr(self.model.visual, "transformer", None)
        self.width = int(getattr(trunk, "width", self.embed_dim))

    def logit_scale_param(self) -> nn.Parameter | None:
        return self.model.logit_scale

    def prepare_for_zero3(self) -> None:
        # CLIP reads its own positional_embedding / text_projection / logit_scale in encode_text, outside forward
        register_zero3_external(self, self.model)
        text = getattr(self.model, "text", None)
        if isinstance(text, nn.Module):
            register_zero3_external(self, text)
        # nn.MultiheadAttention reads out_proj's weight in its own forward, never calling out_proj: with more than
        # one rank that weight would still be partitioned there
        for module in self.model.modules():
            if isinstance(module, nn.MultiheadAttention):
                register_zero3_external(module, module.out_proj)

    def _encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def _encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)

    def _image_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        visual = self.model.visual
        if not hasattr(visual, "output_tokens"):
            raise ConfigError(f"clip.model '{self.clip_config.model}' does not expose patch tokens")
        before = visual.output_tokens
        visual.output_tokens = True
        try:
            _, tokens = visual(pixels)
        finally:
            visual.output_tokens = before
        return tokens
