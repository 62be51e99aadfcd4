"""The two Ray Data stages of extraction: CPU preprocessing tasks and the encoder actor (one model load per actor).

Every batch carries the `item` id through both stages, because Ray Data does not keep row order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raymmrec.data.content_features import decode_image
from raymmrec.encoders import EncoderConfig
from raymmrec.features.encoder_source import EncoderSource
from raymmrec.features.prompts import cliper_views, joined_text
from raymmrec.train.pairs import _image_from_ref, _preprocess_for

# image_status values (also the manifest's counts)
IMAGE_OK, IMAGE_MISSING, IMAGE_UNDECODABLE = 0, 1, 2
IMAGE_STATUS_NAMES = {IMAGE_OK: "ok", IMAGE_MISSING: "missing", IMAGE_UNDECODABLE: "undecodable"}
ITEM_COLUMNS = ["item", "title", "brand", "categories", "description", "image", "image_bytes"]


@dataclass(frozen=True)
class TextPlan:
    """What text each item gets: one joined text of `fields` (clip, beit3) or one prompt per view (cliper)."""

    method: str
    fields: tuple[str, ...] = ()
    views: tuple[str, ...] = ()


def load_image(row: dict[str, Any], root: Path) -> tuple[Any, int]:
    """(PIL image or None, image status) of an items row: inline bytes first, then the path / URL."""
    data = row.get("image_bytes") or _image_from_ref(row.get("image"), root)
    if not data:
        return None, IMAGE_MISSING
    image = decode_image(data)
    return (image, IMAGE_OK) if image is not None else (None, IMAGE_UNDECODABLE)


def preprocess_items(table, encoder: EncoderConfig, plan: TextPlan, root: str) -> dict[str, np.ndarray]:
    """Items → `item`, `image_status`, `pixels` (zeros when not decodable) and `tokens` with their presence flags.

    clip / beit3: `tokens` [B, L] and `text_ok` [B]; cliper: `tokens` [B, C, L] and `present` [B, C].
    Texts longer than the encoder's context are truncated by its tokenizer (77, 248 with Long-CLIP, 128 BEiT3).
    """
    pp = _preprocess_for(encoder)
    rows = table.to_pylist()
    size = pp.image_size
    pixels = np.zeros((len(rows), 3, size, size), np.float32)
    status = np.zeros(len(rows), np.int8)
    for i, row in enumerate(rows):
        image, status[i] = load_image(row, Path(root))
        if image is not None:
            pixels[i] = pp.image_transform(image).numpy()
    out = {"item": np.array([r["item"] for r in rows], np.int64), "image_status": status, "pixels": pixels}
    if plan.method == "cliper":
        texts = [cliper_views(r, plan.views) for r in rows]
        present = np.array([[t is not None for t in views] for views in texts], bool)
        present = present.reshape(len(rows), len(plan.views))
        flat = [t or "" for views in texts for t in views]
        tokens = pp.tokenizer(flat).numpy().astype(np.int64) if flat else np.zeros((0, pp.tokenizer.context_length))
        out["tokens"] = tokens.reshape(len(rows), len(plan.views), -1).astype(np.int64)
        out["present"] = present
    else:
        texts = [joined_text(r, plan.fields) for r in rows]
        out["text_ok"] = np.array([t is not None for t in texts], bool)
        tokens = pp.tokenizer([t or "" for t in texts]).numpy() if rows else np.zeros((0, pp.tokenizer.context_length))
        out["tokens"] = tokens.astype(np.int64)
    return out


class EncodeItems:
    """Ray Data actor: builds the encoder once, then embeds preprocessed batches (only the inputs present)."""

    def __init__(self, source: EncoderSource, method: str, single_modality: bool = False, torch_threads: int = 0):
        import torch

        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.encoder = source.build().to(self.device)
        self.method = method
        self.same_width = self.encoder.embed_dim == self.encoder.fused_dim
        self.single_modality = single_modality and self.same_width

    def _rows(self, fn, mask: np.ndarray, *inputs: np.ndarray, dim: int) -> np.ndarray:
        """fn(inputs[mask]) scattered into zeros [B, dim]."""
        import torch

        out = np.zeros((len(mask), dim), np.float32)
        idx = np.flatnonzero(mask)
        if len(idx):
            tensors = [torch.from_numpy(np.ascontiguousarray(x[idx])).to(self.device) for x in inputs]
            out[idx] = fn(*tensors).float().cpu().numpy()
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        enc = self.encoder
        image_ok = batch["image_status"] == IMAGE_OK
        out = {k: batch[k] for k in ("item", "image_status", "text_ok", "present") if k in batch}
        with torch.inference_mode():
            if self.method == "beit3":
                out.update(self._beit3(batch, image_ok))
                return out
            out["image"] = self._rows(enc.encode_image, image_ok, batch["pixels"], dim=enc.embed_dim)
            if self.method == "cliper":
                b, c, length = batch["tokens"].shape
                views = self._rows(enc.encode_text, batch["present"].reshape(-1),
                                   batch["tokens"].reshape(b * c, length), dim=enc.embed_dim)
                out["views"] = views.reshape(b, c, enc.embed_dim)
            else:
                out["text"] = self._rows(enc.encode_text, batch["text_ok"], batch["tokens"], dim=enc.embed_dim)
        return out

    def _beit3(self, batch: dict[str, np.ndarray], image_ok: np.ndarray) -> dict[str, np.ndarray]:
        enc = self.encoder
        text_ok = batch["text_ok"]
        pixels, tokens = batch["pixels"], batch["tokens"]
        fused = self._rows(enc.encode_fused, image_ok & text_ok, pixels, tokens, dim=enc.fused_dim)
        out = {"fused": fused}
        if not self.same_width:
            return out   # single-modality CLS goes through contrastive heads of another width: no substitute
        # an item with one modality missing gets the CLS of the modality it has (AlignRec's substitute rows)
        need_image = image_ok if self.single_modality else image_ok & ~text_ok
        need_text = text_ok if self.single_modality else text_ok & ~image_ok
        image_only = self._rows(enc.encode_image, need_image, pixels, dim=enc.fused_dim)
        text_only = self._rows(enc.encode_text, need_text, tokens, dim=enc.fused_dim)
        fused[image_ok & ~text_ok] = image_only[image_ok & ~text_ok]
        fused[~image_ok & text_ok] = text_only[~image_ok & text_ok]
        if self.single_modality:
            out.update(image_only=image_only, text_only=text_only)
        return out
