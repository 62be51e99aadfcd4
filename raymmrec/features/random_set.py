"""A feature set of random Gaussian vectors: the floor every real feature set is compared against."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from raymmrec.data import schema
from raymmrec.feature_sets import publish, staging_dir, write_manifest


def write_random_features(dataset_dir: str | Path, name: str = "random", dims: dict[str, int] | None = None,
                          seed: int = 0) -> Path:
    """Write `features/<name>/<modality>.npy` of i.i.d. N(0, 1) rows (default: text 64, image 64) with a manifest."""
    ds = schema.DatasetDir.at(dataset_dir)
    dims = dims or {"text": 64, "image": 64}
    n = pq.read_metadata(ds.items).num_rows
    rng = np.random.default_rng(seed)
    final = ds.features(name)
    tmp = staging_dir(final)
    for modality, dim in dims.items():
        np.save(tmp / f"{modality}.npy", rng.standard_normal((n, dim), dtype=np.float32))
    write_manifest(tmp, {"name": name, "method": "random", "modalities": list(dims), "dims": dims, "seed": seed,
                         "counts": {"items": n}, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    publish(tmp, final)
    return final
