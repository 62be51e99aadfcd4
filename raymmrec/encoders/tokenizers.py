"""Text tokenizers behind one interface: open_clip's bundled BPE (offline) and Hugging Face / XLM-R sentencepiece."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from raymmrec.errors import ConfigError

MASK_TOKEN = "<mask>"


class TextTokenizer:
    """Texts → `[B, context_length]` int64 ids, plus the ids masked language modelling needs."""

    context_length: int
    vocab_size: int
    pad_id: int
    mask_id: int | None
    special_ids: frozenset[int]

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def padding_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """True where `ids` is padding (after the sequence's end)."""
        raise NotImplementedError

    def maskable(self, ids: torch.Tensor) -> torch.Tensor:
        """True where a token may be masked for MLM: real text, not specials or padding."""
        special = torch.zeros_like(ids, dtype=torch.bool)
        for sid in self.special_ids:
            special |= ids == sid
        return ~special & ~self.padding_mask(ids)


class BpeTokenizer(TextTokenizer):
    """An open_clip tokenizer (CLIP's BPE ships inside open_clip, so the default needs no download)."""

    def __init__(self, inner: Any, context_length: int):
        self.inner = inner
        self.context_length = context_length
        self.vocab_size = int(inner.vocab_size)
        self.eot_id = int(getattr(inner, "eot_token_id", 0))
        specials = list(getattr(inner, "all_special_ids", []))
        encoder = getattr(inner, "encoder", {})
        self.mask_id = encoder.get(MASK_TOKEN)
        self.special_ids = frozenset(int(s) for s in specials)
        self.pad_id = 0  # open_clip pads with 0 after the end-of-text token

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return self.inner(list(texts), context_length=self.context_length).long()

    def padding_mask(self, ids: torch.Tensor) -> torch.Tensor:
        is_eot = ids == self.eot_id
        # positions strictly after the first end-of-text token; rows without one are unpadded
        first = torch.where(is_eot.any(-1), is_eot.int().argmax(-1), ids.shape[-1])
        pos = torch.arange(ids.shape[-1], device=ids.device)
        return pos.unsqueeze(0) > first.unsqueeze(-1)


class HfTokenizer(TextTokenizer):
    """A Hugging Face tokenizer (BEiT3 uses XLM-R's sentencepiece vocabulary), padded to a fixed length."""

    def __init__(self, inner: Any, context_length: int):
        self.inner = inner
        self.context_length = context_length
        self.vocab_size = len(inner)
        self.pad_id = int(inner.pad_token_id if inner.pad_token_id is not None else 0)
        self.mask_id = inner.mask_token_id
        self.special_ids = frozenset(int(i) for i in inner.all_special_ids)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        out = self.inner(list(texts), padding="max_length", truncation=True,
                         max_length=self.context_length, return_tensors="pt")
        return out["input_ids"].long()

    def padding_mask(self, ids: torch.Tensor) -> torch.Tensor:
        return ids == self.pad_id


def bundled_bpe(context_length: int, with_mask: bool) -> BpeTokenizer:
    """open_clip's bundled BPE, optionally with a `<mask>` token appended to the vocabulary (id 49408)."""
    from open_clip.tokenizer import SimpleTokenizer

    extra = [MASK_TOKEN] if with_mask else None
    return BpeTokenizer(SimpleTokenizer(additional_special_tokens=extra, context_length=context_length),
                        context_length)


def load_hf_tokenizer(source: str, context_length: int) -> HfTokenizer:
    """Load a tokenizer from a local dir / sentencepiece file or a hub id (XLM-R for official BEiT3)."""
    try:
        if Path(source).is_file():
            # BEiT3 ships a bare sentencepiece model (beit3.spm)
            from transformers import XLMRobertaTokenizer

            inner = XLMRobertaTokenizer(vocab_file=source)
        else:
            from transformers import AutoTokenizer

            inner = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"tokenizer '{source}': cannot load ({first})") from None
    return HfTokenizer(inner, context_length)
