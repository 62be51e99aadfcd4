"""Item preprocessing shared by pre-training, extraction and end-to-end training: image bytes from a path, URL or
inline bytes, decoding, the encoder's image transform and tokenizer, and the per-method item texts."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raymmrec.config import to_dict
from raymmrec.encoders import EncoderConfig, create_preprocess
from raymmrec.encoders.base import Preprocess
from raymmrec.item_text import cliper_views, joined_text

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
    data = row.get("image_bytes") or image_bytes(row.get("image"), root)
    if not data:
        return None, IMAGE_MISSING
    image = decode_image(data)
    return (image, IMAGE_OK) if image is not None else (None, IMAGE_UNDECODABLE)


def preprocess_items(table, encoder: EncoderConfig, plan: TextPlan, root: str) -> dict[str, np.ndarray]:
    """Items → `item`, `image_status`, `pixels` (zeros when not decodable) and `tokens` with their presence flags.

    clip / beit3: `tokens` [B, L] and `text_ok` [B]; cliper: `tokens` [B, C, L] and `present` [B, C].
    Texts longer than the encoder's context are truncated by its tokenizer (77, 248 with Long-CLIP, 128 BEiT3).
    """
    pp = preprocess_for(encoder)
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


def image_bytes(ref: Any, root: Path) -> bytes | None:
    """Encoded image bytes from a local path (relative to `root`) or a URL; None when it cannot be read."""
    if isinstance(ref, (list, tuple)):
        ref = next((r for r in ref if r), None)
    if isinstance(ref, dict):   # Amazon 2023: [{"large": url, "hi_res": url, ...}]
        ref = ref.get("hi_res") or ref.get("large") or ref.get("thumb")
    if not ref or not isinstance(ref, str):
        return None
    try:
        if "://" in ref and not ref.startswith("file://"):
            from urllib.request import urlopen

            with urlopen(ref, timeout=10) as resp:  # noqa: S310 - user-given item image URL
                return resp.read()
        path = Path(ref.removeprefix("file://"))
        return (path if path.is_absolute() else root / path).read_bytes()
    except (OSError, ValueError):
        return None


def decode_image(data: bytes | None):
    """A PIL RGB image, or None when `data` is missing or not a readable image."""
    if not data:
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except Exception:  # noqa: BLE001 - PIL raises many types for corrupt files; a bad image is data, not a crash
        return None


_PREPROCESS: dict[str, Preprocess] = {}


def preprocess_for(encoder: EncoderConfig) -> Preprocess:
    """One Preprocess per process and config (building the BPE tokenizer costs ~0.1 s)."""
    key = json.dumps(to_dict(encoder), sort_keys=True)
    if key not in _PREPROCESS:
        _PREPROCESS[key] = create_preprocess(encoder)
    return _PREPROCESS[key]

