"""On-disk cache of item kNN neighbour lists, keyed by the feature file they were computed from.

At Electronics size the cosine top-k of a 4096-d feature file is ~30 TFLOP (about ten minutes on two
cores), and every FREEDOM / LATTICE / MGCN / AlignRec run on the same data needs the same lists. They
are kept as `<cache dir>/knn/<key>.npz` (columns and similarities, n × k), where the key hashes each
file's absolute path, size and modification time with k (and the search method when approximate), so an edited or replaced file is recomputed.
The cache dir is $RAYMMREC_CACHE_DIR, else ~/.cache/raymmrec; RAYMMREC_CACHE_DIR="" turns it off.
"""
from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)
CACHE_ENV = "RAYMMREC_CACHE_DIR"


def cache_dir() -> Path | None:
    """The cache root from $RAYMMREC_CACHE_DIR (empty: no cache), else ~/.cache/raymmrec."""
    value = os.environ.get(CACHE_ENV)
    if value is None:
        return Path.home() / ".cache" / "raymmrec"
    return Path(value).expanduser() if value else None


def topk_cache_file(feature_files: Sequence[str | Path], k: int, method: str = "exact") -> Path | None:
    """Where the top-k lists of these feature files (one, or several fused in this order) found by `method`
    live; None when caching is off or a file is gone."""
    root = cache_dir()
    paths = [Path(f).resolve() for f in feature_files]
    if root is None or not paths or not all(p.is_file() for p in paths):
        return None
    identity = "|".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths)
    # exact keeps the key it had before approximate methods existed, so existing caches stay valid
    method_tag = "" if method == "exact" else f"|method={method}"
    key = hashlib.sha1(f"{identity}|k={k}{method_tag}".encode()).hexdigest()[:20]
    return root / "knn" / f"{key}.npz"


def load_topk(file: Path | None, n: int, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (columns as stored, similarities) when `file` holds n × k lists; None otherwise (never raises)."""
    if file is None or not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as saved:
            cols, vals = saved["cols"], saved["vals"]
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("ignoring unreadable kNN cache file %s (%s)", file, exc)
        return None
    if cols.shape != (n, k) or vals.shape != (n, k):
        return None
    return cols, vals


def save_topk(file: Path | None, cols: np.ndarray, vals: np.ndarray) -> None:
    """Write the lists atomically (a unique temporary name, then a rename); a read-only cache is only logged."""
    if file is None:
        return
    tmp = file.with_name(f".{file.stem}.{uuid.uuid4().hex[:8]}.npz")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        index = np.int32 if cols.shape[0] < 2**31 else np.int64
        np.savez(tmp, cols=cols.astype(index), vals=vals.astype(np.float32))
        os.replace(tmp, file)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        logger.warning("could not write the kNN cache %s (%s); the lists will be recomputed next time", file, exc)
