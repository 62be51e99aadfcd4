"""BEiT3's multiway transformer, written for raymmrec with torchscale's parameter names (official checkpoints load as-is).

Tokens attend to each other across modalities in one softmax (shared self-attention); every projection, norm and
feed-forward network has a vision copy `A` and a language copy `B`, chosen by token position: the first
`n_vision` tokens (CLS + patches) go to `A`, the rest to `B`. Optional vision-language experts `ffn.C` in the top
layers process every token of a fused input (BEiT3 paper, §2.1); official releases have none (vl_layers=0).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

# Fairseq convention kept by torchscale: position ids start at 2.
POSITION_OFFSET = 2


class Multiway(nn.Module):
    """A vision copy `A` and a language copy `B` of a module; tokens `< n_vision` go to A, the others to B."""

    def __init__(self, make: Callable[[], nn.Module]):
        super().__init__()
        self.A = make()
        self.B = make()

    def forward(self, x: torch.Tensor, n_vision: int) -> torch.Tensor:
        n = x.shape[1]
        if n_vision >= n:
            return self.A(x)
        if n_vision <= 0:
            return self.B(x)
        return torch.cat([self.A(x[:, :n_vision]), self.B(x[:, n_vision:])], dim=1)


class FeedForward(nn.Module):
    """fc1 → GELU → sub-LayerNorm → fc2 (Magneto's sub-LN, as in torchscale's FeedForwardNetwork)."""

    def __init__(self, dim: int, hidden: int, eps: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.ffn_layernorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.fc1(x).float()).type_as(x)
        return self.fc2(self.ffn_layernorm(h))


class MultiwayFeedForward(Multiway):
    """Vision / language experts, plus an optional vision-language expert `C` used for every token of a fused input."""

    def __init__(self, dim: int, hidden: int, eps: float, vl_expert: bool):
        super().__init__(lambda: FeedForward(dim, hidden, eps))
        self.C = FeedForward(dim, hidden, eps) if vl_expert else None

    def forward(self, x: torch.Tensor, n_vision: int) -> torch.Tensor:
        if self.C is not None and 0 < n_vision < x.shape[1]:
            return self.C(x)
        return super().forward(x, n_vision)


class MultiwayAttention(nn.Module):
    """Self-attention over all tokens, with per-modality q/k/v/out projections and sub-LayerNorm."""

    def __init__(self, dim: int, heads: int, eps: float, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.k_proj = Multiway(lambda: nn.Linear(dim, dim))
        self.v_proj = Multiway(lambda: nn.Linear(dim, dim))
        self.q_proj = Multiway(lambda: nn.Linear(dim, dim))
        self.out_proj = Multiway(lambda: nn.Linear(dim, dim))
        self.inner_attn_ln = Multiway(lambda: nn.LayerNorm(dim, eps=eps))

    def forward(self, x: torch.Tensor, n_vision: int, padding_mask: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = (heads(p(x, n_vision)) for p in (self.q_proj, self.k_proj, self.v_proj))
        keep = None if padding_mask is None else ~padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep,
                                             dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(b, n, d)
        return self.out_proj(self.inner_attn_ln(out, n_vision), n_vision)


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's residual branch with probability `p` while training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class EncoderLayer(nn.Module):
    """Pre-norm block: x + attn(LN(x)), then x + ffn(LN(x))."""

    def __init__(self, dim: int, heads: int, hidden: int, eps: float, drop_path: float, vl_expert: bool):
        super().__init__()
        self.self_attn = MultiwayAttention(dim, heads, eps)
        self.self_attn_layer_norm = Multiway(lambda: nn.LayerNorm(dim, eps=eps))
        self.ffn = MultiwayFeedForward(dim, hidden, eps, vl_expert)
        self.final_layer_norm = Multiway(lambda: nn.LayerNorm(dim, eps=eps))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, n_vision: int, padding_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop_path(self.self_attn(self.self_attn_layer_norm(x, n_vision), n_vision, padding_mask))
        return x + self.drop_path(self.ffn(self.final_layer_norm(x, n_vision), n_vision))


class PositionTable(nn.Module):
    """Learned absolute positions: `A` for [CLS, patches], `B` for text, each numbered from 2."""

    def __init__(self, n_vision_positions: int, n_text_positions: int, dim: int):
        super().__init__()
        self.A = nn.Embedding(n_vision_positions + POSITION_OFFSET, dim)
        self.B = nn.Embedding(n_text_positions, dim)

    def forward(self, n_vision: int, n_text: int, device: torch.device) -> torch.Tensor:
        parts = []
        if n_vision:
            parts.append(self.A(torch.arange(POSITION_OFFSET, POSITION_OFFSET + n_vision, device=device)))
        if n_text:
            parts.append(self.B(torch.arange(POSITION_OFFSET, POSITION_OFFSET + n_text, device=device)))
        return torch.cat(parts, dim=0).unsqueeze(0)


class Encoder(nn.Module):
    """Positions + multiway layers + a final multiway LayerNorm."""

    def __init__(self, dim: int, depth: int, heads: int, hidden: int, n_vision_positions: int,
                 n_text_positions: int, eps: float, drop_path_rate: float, vl_layers: int):
        super().__init__()
        self.embed_positions = PositionTable(n_vision_positions, n_text_positions, dim)
        rates = torch.linspace(0, drop_path_rate, depth).tolist() if depth > 1 else [drop_path_rate]
        self.layers = nn.ModuleList(
            EncoderLayer(dim, heads, hidden, eps, rates[i], vl_expert=i >= depth - vl_layers) for i in range(depth)
        )
        self.layer_norm = Multiway(lambda: nn.LayerNorm(dim, eps=eps))

    def forward(self, x: torch.Tensor, n_vision: int, padding_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.embed_positions(n_vision, x.shape[1] - n_vision, x.device).to(x.dtype)
        if padding_mask is not None:
            x = x * (~padding_mask).unsqueeze(-1).to(x.dtype)
        for layer in self.layers:
            x = layer(x, n_vision, padding_mask)
        return self.layer_norm(x, n_vision)


class VisionEmbedding(nn.Module):
    """Patchify with a strided conv, optionally swap masked patches for `mask_token`, prepend `cls_token`."""

    def __init__(self, img_size: int, patch_size: int, dim: int, in_chans: int = 3):
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, pixels: torch.Tensor, image_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.proj(pixels).flatten(2).transpose(1, 2)
        if image_mask is not None:
            w = image_mask.unsqueeze(-1).to(x.dtype)
            x = x * (1 - w) + self.mask_token.to(x.dtype) * w
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)


class BEiT3(nn.Module):
    """The BEiT3 backbone: text / vision embeddings and the multiway encoder; returns all hidden states."""

    def __init__(self, *, vocab_size: int, dim: int, depth: int, heads: int, mlp_ratio: float, img_size: int,
                 patch_size: int, max_text_positions: int = 1024, eps: float = 1e-5, drop_path_rate: float = 0.0,
                 vl_layers: int = 0):
        super().__init__()
        self.text_embed = nn.Embedding(vocab_size, dim)
        self.vision_embed = VisionEmbedding(img_size, patch_size, dim)
        self.encoder = Encoder(dim, depth, heads, int(dim * mlp_ratio), self.vision_embed.num_patches + 1,
                               max_text_positions, eps, drop_path_rate, vl_layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BEiT3's released init: truncated normal (std 0.02) for linear layers and learned tokens."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-0.02, b=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-0.02, b=0.02)
        nn.init.trunc_normal_(self.vision_embed.cls_token, std=0.02, a=-0.02, b=0.02)
        nn.init.trunc_normal_(self.vision_embed.mask_token, std=0.02, a=-0.02, b=0.02)

    def forward(self, text_tokens: torch.Tensor | None = None, pixels: torch.Tensor | None = None,
                text_padding_mask: torch.Tensor | None = None,
                image_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        parts, pad = [], None
        n_vision = 0
        if pixels is not None:
            v = self.vision_embed(pixels, image_mask)
            n_vision = v.shape[1]
            parts.append(v)
        if text_tokens is not None:
            parts.append(self.text_embed(text_tokens))
            if text_padding_mask is not None:
                vision_pad = text_padding_mask.new_zeros(text_padding_mask.shape[0], n_vision)
                pad = torch.cat([vision_pad, text_padding_mask], dim=1)
        if not parts:
            raise ValueError("BEiT3 needs text_tokens, pixels or both")
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return self.encoder(x, n_vision, pad), n_vision
