"""Item top-k neighbour search, exact (blockwise torch matmul) or approximate through a FAISS IVF index.

The exact search costs n² · d multiply-adds: ~30 TFLOP at Electronics (63k × 4096-d), ~100× that at 10×
Electronics. FAISS's inverted-file index clusters the unit rows into `nlist` cells (k-means on a sample)
and scores each query against the rows of its `nprobe` nearest cells only, so the cost falls by about
nlist / nprobe at a measured loss of neighbour recall (bench/knn_recall.py). A GPU index is used when
faiss sees a GPU. Rows for which the probed cells hold fewer than k items are searched exactly.
"""
from __future__ import annotations

import math
import warnings
from typing import Literal, get_args

import numpy as np
import torch

from raymmrec.recsys.graphs import cosine_topk

KnnMethod = Literal["exact", "faiss"]
KNN_METHODS: tuple[str, ...] = get_args(KnnMethod)
TRAIN_POINTS_PER_LIST = 40       # k-means sample per cell: FAISS warns below 39; k-means dominates at small nprobe
QUERY_BLOCK = 16384              # queries per search call: bounds the (block × k) result buffers


def default_nlist(n: int) -> int:
    """Cells of the IVF index: ~4·√n (FAISS's rule of thumb), no more than the sample can train."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def default_nprobe(nlist: int) -> int:
    """Cells probed per query: 1/64 of them, at least 8 (measured neighbour recall 0.988 / 0.9996 on generated
    baby's text / image features with 8 of 174 cells, 0.9996 on 63k clustered items with 8 of 1004)."""
    return min(nlist, max(8, nlist // 64))


def _unit_rows(features: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        x = features.detach().to(torch.float32).cpu().numpy()
    else:
        with warnings.catch_warnings():   # object-store arrays are read-only; the copy below is written
            warnings.filterwarnings("ignore", message=".*not writable")
            x = np.asarray(features, dtype=np.float32)
    x = np.array(x, dtype=np.float32, order="C", copy=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def _import_faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError("knn_method 'faiss' needs the faiss-cpu (or faiss-gpu) package: pip install faiss-cpu") \
            from None
    return faiss


def faiss_gpu_count() -> int:
    """GPUs the installed faiss can use (0 for faiss-cpu)."""
    faiss = _import_faiss()
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def faiss_topk(features: np.ndarray | torch.Tensor, k: int, nlist: int = 0, nprobe: int = 0, seed: int = 0,
               use_gpu: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(columns, cosine similarities), each n × k, of each row's approximate k most similar rows (self included).

    `nlist` / `nprobe` 0 take `default_nlist` / `default_nprobe`; `use_gpu` None: a GPU when faiss has one.
    """
    faiss = _import_faiss()
    x = _unit_rows(features)
    n, d = x.shape
    if not 0 < k <= n:
        raise ValueError(f"k={k} must be in 1..{n} (the number of items)")
    nlist = nlist or default_nlist(n)
    nprobe = min(nlist, nprobe or default_nprobe(nlist))
    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
    if nlist < 2:
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    gpus = faiss_gpu_count() if use_gpu is None else int(bool(use_gpu))
    if gpus:
        resources = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(resources, 0, index)
    if nlist >= 2:
        sample = np.random.default_rng(seed).choice(n, size=min(n, TRAIN_POINTS_PER_LIST * nlist), replace=False)
        index.train(x[np.sort(sample)])
        index.nprobe = nprobe
    index.add(x)
    cols = np.empty((n, k), dtype=np.int64)
    vals = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, QUERY_BLOCK):
        vals[start:start + QUERY_BLOCK], cols[start:start + QUERY_BLOCK] = index.search(x[start:start + QUERY_BLOCK], k)
    short = np.flatnonzero((cols < 0).any(axis=1))
    if len(short):
        # the probed cells held fewer than k items: those rows against every item, exactly
        xt = torch.from_numpy(x)
        for start in range(0, len(short), 2048):
            rows = short[start:start + 2048]
            top_val, top_idx = torch.topk(torch.from_numpy(x[rows]) @ xt.T, k, dim=1)
            cols[rows], vals[rows] = top_idx.numpy(), top_val.numpy()
    return cols, vals


def item_topk(features: np.ndarray | torch.Tensor, k: int, method: KnnMethod = "exact",
              block_rows: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(columns, cosine similarities) of every row's k nearest rows by `method`: 'exact' or 'faiss' (IVF);
    the exact search runs on the GPU when this process has one (Electronics' 4096-d image graph: seconds)."""
    if method == "exact":
        if torch.cuda.is_available() and not isinstance(features, torch.Tensor):
            with warnings.catch_warnings():   # object-store arrays are read-only; the search only reads
                warnings.filterwarnings("ignore", message=".*not writable")
                features = torch.as_tensor(np.asarray(features, dtype=np.float32)).cuda()
        return cosine_topk(features, k, block_rows)
    if method == "faiss":
        return faiss_topk(features, k)
    raise ValueError(f"unknown kNN method {method!r} (expected one of {', '.join(KNN_METHODS)})")


def neighbour_recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row's exact top-k columns that the approximate top-k also holds."""
    if approx.shape != exact.shape:
        raise ValueError(f"neighbour lists differ in shape: {approx.shape} vs {exact.shape}")
    hits = sum(int((a[:, :, None] == e[:, None, :]).any(axis=2).sum())
               for a, e in ((approx[s:s + 4096], exact[s:s + 4096]) for s in range(0, len(exact), 4096)))
    return hits / exact.size
