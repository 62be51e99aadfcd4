"""Cheap fixed content extractors (the `raw` feature set): image pixels/colour/texture and hashed TF-IDF text.

They stand in for MMRec's pre-extracted CNN and sentence features, so backbones can train before any
encoder exists. Both are deterministic functions of the item content alone.
"""
from __future__ import annotations

import io
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
from PIL import Image, UnidentifiedImageError

THUMB = 8            # downsampled pixels: THUMB x THUMB x 3
COLOUR_LEVELS = 4    # colour histogram: COLOUR_LEVELS ** 3 bins
GRAD_SIZE = 32       # gradient-orientation histogram computed at this resolution
GRAD_BINS = 8
IMAGE_DIM = THUMB * THUMB * 3 + COLOUR_LEVELS ** 3 + GRAD_BINS
TEXT_DIM = 256


def decode_image(data: bytes) -> Image.Image | None:
    """The RGB image in `data`, or None when it does not decode."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def _unit(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.linalg.norm(x)), 1e-12)


def image_vector(img: Image.Image) -> np.ndarray:
    """One image → IMAGE_DIM floats: unit-norm blocks of thumbnail pixels, colour histogram, edge orientations."""
    thumb = np.asarray(img.resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.float32).ravel() / 255.0
    pixels = np.asarray(img.resize((GRAD_SIZE, GRAD_SIZE), Image.Resampling.BILINEAR), dtype=np.float32)
    q = np.minimum((pixels / 256.0 * COLOUR_LEVELS).astype(np.int64), COLOUR_LEVELS - 1)
    bins = (q[..., 0] * COLOUR_LEVELS + q[..., 1]) * COLOUR_LEVELS + q[..., 2]
    hist = np.bincount(bins.ravel(), minlength=COLOUR_LEVELS ** 3).astype(np.float32)
    gray = pixels.mean(axis=2)
    gy, gx = np.gradient(gray)
    mag = np.hypot(gx, gy).ravel()
    # Orientation modulo pi: a stripe's two edges vote for the same bin.
    angle = np.mod(np.arctan2(gy, gx).ravel(), np.pi)
    obin = np.minimum((angle / np.pi * GRAD_BINS).astype(np.int64), GRAD_BINS - 1)
    grad = np.bincount(obin, weights=mag, minlength=GRAD_BINS).astype(np.float32)
    return np.concatenate([_unit(thumb), _unit(hist), _unit(grad)]).astype(np.float32)


def image_features(images: Iterable[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """Encoded images → (features [n, IMAGE_DIM], decoded flags); rows that do not decode are zeros."""
    rows, ok = [], []
    for data in images:
        img = decode_image(data) if data else None
        ok.append(img is not None)
        rows.append(image_vector(img) if img is not None else np.zeros(IMAGE_DIM, np.float32))
    feats = np.stack(rows) if rows else np.zeros((0, IMAGE_DIM), np.float32)
    return feats, np.array(ok, dtype=bool)


def fill_missing_with_mean(feats: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Rows without content get the mean of the others (MMRec's rule for items without an image feature)."""
    if ok.all() or not ok.any():
        return feats
    out = feats.copy()
    out[~ok] = feats[ok].mean(axis=0)
    return out


def item_sentence(title: str | None, brand: str | None, categories: Sequence[str] | None,
                  description: str | None) -> str:
    """MMRec's text input: title, brand, category path and description, blanks for missing fields."""
    parts = [title or " ", brand or " ", " ".join(categories or []) + " ", description or " "]
    return " ".join(p.replace("\n", " ") for p in parts)


def item_sentences(items: pa.Table) -> list[str]:
    """The text-encoder sentence of every row of an items table."""
    cols = {c: items.column(c).to_pylist() for c in ("title", "brand", "categories", "description")}
    return [item_sentence(*row) for row in zip(cols["title"], cols["brand"], cols["categories"], cols["description"])]


def text_features(sentences: Sequence[str], dim: int = TEXT_DIM) -> np.ndarray:
    """Hashed TF-IDF (unit rows) of the item sentences; IDF is fit on this corpus."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    counts = HashingVectorizer(n_features=dim, alternate_sign=False, norm=None,
                               token_pattern=r"(?u)\b\w+\b").transform(sentences)
    tfidf = TfidfTransformer(norm="l2", sublinear_tf=True).fit_transform(counts)
    return np.asarray(tfidf.todense(), dtype=np.float32)
