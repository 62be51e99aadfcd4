"""Writing items.parquet chunk by chunk: image decode check (image_ok), and the `raw` content feature set."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa

from raymmrec.data import content_features
from raymmrec.data.faults import RowFaults
from raymmrec.data.schema import ITEMS_FILE, ITEMS_SCHEMA, RAW_FEATURES, DatasetDir, TableWriter
from raymmrec.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


@dataclass
class ItemsReport:
    """What the item pass found: images checked, images that do not decode, raw modalities written."""

    items: int = 0
    images_checked: int = 0
    faults: RowFaults = field(default_factory=lambda: RowFaults("images", ITEMS_FILE))
    raw_modalities: list[str] = field(default_factory=list)

    @property
    def undecodable(self) -> int:
        return self.faults.total()


def _is_remote(ref: str) -> bool:
    return "://" in ref and not ref.startswith("file://")


def _local_image(ref: str | None, data: bytes | None, root: Path) -> tuple[bytes | None, bool, bool]:
    """(encoded image, checkable here, file missing): inline bytes, else a local file; URLs are not checked."""
    if data:
        return data, True, False
    if not ref or _is_remote(ref):
        return None, False, False
    path = Path(ref.removeprefix("file://"))
    path = path if path.is_absolute() else root / path
    try:
        return path.read_bytes(), True, False
    except OSError:
        return None, True, True


def local_image_paths(asins: list[str], folder: str | Path) -> list[str | None]:
    """Absolute path of `<folder>/<asin>.<ext>` for each asin that has an image file there, else None."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"images folder '{folder}' does not exist")
    by_stem = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    return [str(by_stem[a].resolve()) if a in by_stem else None for a in asins]


def write_items(root: str | Path, chunks: Iterable[pa.Table], raw_features: bool = True,
                progress: bool = False, total_chunks: int | None = None) -> ItemsReport:
    """Write items.parquet from item chunks (rows in item order), flag images, and save features/raw."""
    from tqdm import tqdm

    root = Path(root)
    report = ItemsReport(faults=RowFaults("images", str(root / ITEMS_FILE)))
    image_rows: list[np.ndarray] = []
    ok_rows: list[np.ndarray] = []
    sentences: list[str] = []
    with TableWriter(root / ITEMS_FILE, ITEMS_SCHEMA) as writer:
        for chunk in tqdm(chunks, desc="items", unit="chunk", total=total_chunks, disable=not progress):
            refs = chunk.column("image").to_pylist() if "image" in chunk.column_names else [None] * chunk.num_rows
            blobs = (chunk.column("image_bytes").to_pylist() if "image_bytes" in chunk.column_names
                     else [None] * chunk.num_rows)
            loaded = [_local_image(r, b, root) for r, b in zip(refs, blobs)]
            checked = np.array([c for _, c, _ in loaded], dtype=bool)
            missing = np.array([m for _, _, m in loaded], dtype=bool)
            feats, ok = content_features.image_features(d for d, _, _ in loaded)
            for offset in np.flatnonzero(checked & ~ok):
                report.faults.add("missing_file" if missing[offset] else "undecodable", report.items + int(offset))
            flags = pa.array([bool(o) if c else None for o, c in zip(ok, checked)], pa.bool_())
            chunk = chunk.drop_columns([c for c in ("image_ok",) if c in chunk.column_names])
            writer.write(chunk.append_column("image_ok", flags))
            report.items += chunk.num_rows
            report.images_checked += int(checked.sum())
            if raw_features:
                image_rows.append(feats)
                ok_rows.append(ok)
                sentences += content_features.item_sentences(chunk)
    report.faults.warn()
    if raw_features:
        report.raw_modalities = _save_raw_features(DatasetDir(root), image_rows, ok_rows, sentences)
    return report


def _save_raw_features(ds: DatasetDir, image_rows: list[np.ndarray], ok_rows: list[np.ndarray],
                       sentences: list[str]) -> list[str]:
    """Save the modalities some item has content for; items without an image get the mean image feature."""
    out = ds.features(RAW_FEATURES)
    written = []
    ok = np.concatenate(ok_rows) if ok_rows else np.zeros(0, bool)
    if ok.any():
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "image.npy", content_features.fill_missing_with_mean(np.concatenate(image_rows), ok))
        written.append("image")
    if any(s.strip() for s in sentences):
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "text.npy", content_features.text_features(sentences))
        written.append("text")
    if written != ["image", "text"]:
        log.info("features/%s: wrote %s (no item had content for the rest)", RAW_FEATURES, written or "nothing")
    return written
