"""The feature-set format, its one writer and one reader: .npy arrays filled by item id (memory-mapped), the Parquet
table keyed by item, the manifest listing the modalities. Stage 1 writes `raw`, stage 3 and end-to-end training
write theirs; stage 4 reads any of them with `load_feature_set`."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raymmrec.errors import DataError

FEATURES_DIR = "features"           # a dataset dir's own sets, by name
MANIFEST_FILE = "manifest.json"     # load_feature_set reads its `modalities` list
TABLE_FILE = "items.parquet"
VIEWS_DIR = "views"                 # side arrays (per-view / single-modality), not modalities of the set
PARQUET_ROWS = 8192


class ItemArrays:
    """Float32 arrays `[n_items, ...]` under one folder, written by item id; every item must arrive exactly once.

    `files` maps a batch column to its file (relative, without .npy); each file is created, memory-mapped, when
    its column first arrives, so the encoder's widths need not be known in advance.
    """

    def __init__(self, folder: Path, n_items: int, files: Mapping[str, str],
                 flags: Mapping[str, tuple[tuple[int, ...], np.dtype]]):
        self.folder = folder
        self.n_items = n_items
        self.files = dict(files)
        self.arrays: dict[str, np.ndarray] = {}     # by relative file name
        self.flags = {name: np.zeros((n_items, *tail), dtype) for name, (tail, dtype) in flags.items()}
        self.seen = np.zeros(n_items, np.int32)

    def _array(self, rel: str, like: np.ndarray) -> np.ndarray:
        if rel not in self.arrays:
            path = self.folder / f"{rel}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.arrays[rel] = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                                         shape=(self.n_items, *like.shape[1:]))
        return self.arrays[rel]

    def scatter(self, batch: Mapping[str, np.ndarray]) -> int:
        """Write one batch's rows at their item ids; returns its row count."""
        items = np.asarray(batch["item"], np.int64)
        if len(items) and (items.min() < 0 or items.max() >= self.n_items):
            bad = items[(items < 0) | (items >= self.n_items)][0]
            raise DataError(f"items.parquet: item id {int(bad)} outside 0..{self.n_items - 1} "
                            "(ids must be the row number)")
        np.add.at(self.seen, items, 1)
        for column, rel in self.files.items():
            if column in batch:
                self._array(rel, batch[column])[items] = batch[column]
        for name, arr in self.flags.items():
            if name in batch:
                arr[items] = batch[name]
        return len(items)

    def check_complete(self, source: str) -> None:
        """Every item exactly once: nothing dropped, nothing duplicated."""
        missing = np.flatnonzero(self.seen == 0)
        if len(missing):
            raise DataError(f"{source}: {len(missing)} items got no feature row (first: item {int(missing[0])})")
        dup = np.flatnonzero(self.seen > 1)
        if len(dup):
            raise DataError(f"{source}: item {int(dup[0])} appears {int(self.seen[dup[0]])} times "
                            f"({len(dup)} duplicated ids; item ids must be unique)")

    def flush(self) -> None:
        for arr in self.arrays.values():
            arr.flush()


def _fixed_list(block: np.ndarray) -> pa.Array:
    block = np.ascontiguousarray(block, dtype=block.dtype).reshape(len(block), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), block.shape[1])


def write_item_table(path: Path, items: np.ndarray, asins: list | None, columns: Mapping[str, np.ndarray]) -> None:
    """The Parquet table keyed by item: id, asin, then one column per array (vectors as fixed-size lists)."""
    writer = None
    try:
        for lo in range(0, max(len(items), 1), PARQUET_ROWS):
            hi = min(lo + PARQUET_ROWS, len(items))
            data = {"item": pa.array(items[lo:hi], pa.int32())}
            if asins is not None:
                data["asin"] = pa.array(asins[lo:hi], pa.string())
            for name, arr in columns.items():
                block = np.asarray(arr[lo:hi])
                data[name] = pa.array(block) if block.ndim == 1 else _fixed_list(block)
            table = pa.table(data)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def write_manifest(folder: Path, manifest: Mapping) -> None:
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str))


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a feature set (empty for sets written without one, e.g. features/raw)."""
    path = Path(folder) / MANIFEST_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def staging_dir(final: Path) -> Path:
    """A fresh sibling dir to write into; `publish` swaps it in, so a failed run leaves the old set intact."""
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def publish(tmp: Path, final: Path) -> None:
    """Replace `final` by `tmp`."""
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def blocks(n: int, size: int) -> Iterable[slice]:
    """Consecutive row slices of at most `size` rows."""
    for lo in range(0, n, size):
        yield slice(lo, min(lo + size, n))


def feature_set_folder(dataset_dir: str | Path, ref: str) -> Path:
    """A feature set by path (any folder of .npy files: a stage-3 or end-to-end output) or by name (the dataset
    dir's own `features/<name>`: `raw`, or a set a standalone extraction wrote there)."""
    if os.sep in ref or Path(ref).is_absolute():
        return Path(ref)
    return Path(dataset_dir) / FEATURES_DIR / ref


def modality_order(names: list[str]) -> list[str]:
    """Text first, then the rest by name: MMRec's VBPR concatenates [text; image]."""
    return sorted(names, key=lambda n: (n != "text", n))


def load_npy(path: Path) -> np.ndarray:
    """A numeric .npy array, or a one-line DataError naming the file."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"feature file '{path}' is not a numeric .npy array ({exc})") from None


def load_feature_set(folder: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read `<folder>/*.npy` (or the modalities a manifest.json lists): arrays and file paths per modality."""
    folder = Path(folder)
    manifest = folder / MANIFEST_FILE
    if manifest.is_file():
        listed = json.loads(manifest.read_text()).get("modalities")
        if isinstance(listed, Mapping):
            files = {str(k): folder / str(v) for k, v in listed.items()}
        elif isinstance(listed, list) and listed:
            files = {str(m): folder / f"{m}.npy" for m in listed}
        else:
            raise DataError(f"{manifest}: expected 'modalities' as a non-empty list or mapping of name → file")
    else:
        files = {p.stem: p for p in sorted(folder.glob("*.npy"))}
        files = {m: files[m] for m in modality_order(list(files))}
    if not files:
        raise DataError(f"feature set '{folder}' holds no .npy file")
    for name, path in files.items():
        if not path.is_file():
            raise DataError(f"feature file '{path}' (modality '{name}') does not exist")
    return {name: load_npy(path) for name, path in files.items()}, {name: str(p) for name, p in files.items()}


# MMRec's folder format: every <modality>_feat.npy is a modality (MMRec itself reads image and text only)
MMREC_FEATURE_SUFFIX = "_feat.npy"


def mmrec_feature_files(folder: Path) -> dict[str, Path]:
    """Modality → file for every `<modality>_feat.npy` in an MMRec folder (TikTok's audio_feat.npy too), by name."""
    suffix = MMREC_FEATURE_SUFFIX
    found = {p.name[:-len(suffix)]: p for p in sorted(folder.glob(f"*{suffix}")) if p.is_file()}
    return {m: p for m, p in found.items() if m}
