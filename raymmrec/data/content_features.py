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
TEXT_DIM = 512          # hashed buckets: fewer collisions between words that mean different things


def decode_image(data: bytes) -> Image.Image | None:
    """The RGB image in `data`, or None when it does not decode."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _row_histograms(bins: np.ndarray, n_bins: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-row histograms of a [n, m] array of bin indices, in one bincount."""
    n = bins.shape[0]
    offset = bins + np.arange(n)[:, None] * n_bins
    w = None if weights is None else weights.ravel()
    return np.bincount(offset.ravel(), weights=w, minlength=n * n_bins).reshape(n, n_bins).astype(np.float32)


def image_vectors(pixels: np.ndarray) -> np.ndarray:
    """[n, GRAD_SIZE, GRAD_SIZE, 3] uint8 → [n, IMAGE_DIM]: unit-norm blocks of thumbnail, colours, edge orientations."""
    n = pixels.shape[0]
    x = pixels.astype(np.float32)
    cell = GRAD_SIZE // THUMB
    thumb = x.reshape(n, THUMB, cell, THUMB, cell, 3).mean(axis=(2, 4)).reshape(n, -1) / 255.0
    q = (pixels // (256 // COLOUR_LEVELS)).astype(np.int32)
    colour = ((q[..., 0] * COLOUR_LEVELS + q[..., 1]) * COLOUR_LEVELS + q[..., 2]).reshape(n, -1)
    hist = _row_histograms(colour, COLOUR_LEVELS ** 3)
    gy, gx = np.gradient(x.mean(axis=3), axis=(1, 2))
    mag = np.hypot(gx, gy).reshape(n, -1)
    # Orientation modulo pi: a stripe's two edges vote for the same bin.
    angle = np.mod(np.arctan2(gy, gx), np.pi).reshape(n, -1)
    obin = np.minimum((angle / np.pi * GRAD_BINS).astype(np.int64), GRAD_BINS - 1)
    grad = _row_histograms(obin, GRAD_BINS, mag)
    return np.concatenate([_unit_rows(thumb), _unit_rows(hist), _unit_rows(grad)], axis=1).astype(np.float32)


def image_features(images: Iterable[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """Encoded images → (features [n, IMAGE_DIM], decoded flags); rows that do not decode are zeros."""
    pixels, ok = [], []
    for data in images:
        img = decode_image(data) if data else None
        ok.append(img is not None)
        if img is not None:
            pixels.append(np.asarray(img.resize((GRAD_SIZE, GRAD_SIZE), Image.Resampling.BILINEAR)))
    ok_arr = np.array(ok, dtype=bool)
    feats = np.zeros((len(ok), IMAGE_DIM), np.float32)
    if pixels:
        feats[ok_arr] = image_vectors(np.stack(pixels))
    return feats, ok_arr


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
    return tfidf.astype(np.float32).toarray()
