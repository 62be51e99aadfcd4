"""Exact vs FAISS (IVF) item kNN: neighbour recall, search time, and FREEDOM's test Recall@20 on each graph.

    python bench/knn_recall.py                                   # generated `baby`, k=10, FREEDOM 60 epochs
    python bench/knn_recall.py nprobes='[4, 8, 32]' epochs=0     # only the neighbour search
    python bench/knn_recall.py scale_items=630000 scale_dim=384 exact_queries=4096   # clustered stand-in, 10× size

Times are wall seconds with the process's torch / faiss threads (`threads`); report `uptime` beside them.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from raymmrec.config import load_config  # noqa: E402
from raymmrec.errors import exit_on_user_error  # noqa: E402
from raymmrec.recsys.approximate_knn import default_nlist, default_nprobe, faiss_topk, neighbour_recall  # noqa: E402
from raymmrec.recsys.graphs import cosine_topk  # noqa: E402
from raymmrec.recsys.report import format_table  # noqa: E402
from raymmrec.recsys.trainer import TrainerConfig, train_model  # noqa: E402


@dataclass
class KnnRecallConfig:
    """The data (or a clustered stand-in of a given size), k, the probes tried and FREEDOM's training."""

    data: str = ""                     # dataset dir or MMRec folder; empty: generated `baby` under `work`
    work: str = "/tmp/raymmrec-bench"
    k: int = 10
    nprobes: list[int] = field(default_factory=list)   # empty: the default probe count only
    scale_items: int = 0               # > 0: a random clustered feature matrix instead of the data
    scale_dim: int = 384
    exact_queries: int = 0             # > 0: the exact search for this many sampled rows only, its time scaled to n
    epochs: int = 60                   # FREEDOM epochs per graph; 0: no training
    threads: int = 1
    out: str = ""


def _data(cfg: KnnRecallConfig):
    from raymmrec.recsys.interaction_data import InteractionData

    path = Path(cfg.data) if cfg.data else Path(cfg.work) / "synth-baby"
    if not cfg.data and not (path / "stats.json").is_file():
        from raymmrec.data.synth import SynthConfig, generate_dataset

        generate_dataset(SynthConfig(size="baby", seed=0), path)
    return InteractionData.load(path, "raw")


def _clustered(n: int, d: int, clusters: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, d)).astype(np.float32)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, 65536):       # chunked: the noise of 630k × d at once would double the peak
        m = min(65536, n - s)
        out[s:s + m] = centers[rng.integers(clusters, size=m)] + 0.5 * rng.normal(size=(m, d)).astype(np.float32)
    return out


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _exact_for(x: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k columns of the `queries` rows against every row, in blocks."""
    xt = torch.from_numpy(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))
    return np.concatenate([torch.topk(xt[queries[s:s + 2048]] @ xt.T, k, dim=1).indices.numpy()
                           for s in range(0, len(queries), 2048)])


def search_rows(name: str, x: np.ndarray, k: int, nprobes: list[int], exact_queries: int = 0) -> list[dict]:
    """One row for the exact search and one per probe count for FAISS; with `exact_queries`, recall and the
    exact time come from that many sampled rows (the time scaled to all rows)."""
    n = len(x)
    if exact_queries and exact_queries < n:
        queries = np.sort(np.random.default_rng(0).choice(n, exact_queries, replace=False))
        exact, t_exact = _timed(_exact_for, x, queries, k)
        t_exact *= n / len(queries)
    else:
        queries = np.arange(n)
        (exact, _), t_exact = _timed(cosine_topk, x, k)
    rows = [{"features": name, "items": n, "dim": x.shape[1], "method": "exact", "nlist": "-", "nprobe": "-",
             "seconds": round(t_exact, 2), "speed-up": 1.0, "recall": 1.0}]
    nlist = default_nlist(len(x))
    for nprobe in nprobes or [default_nprobe(nlist)]:
        (cols, _), t = _timed(faiss_topk, x, k, nlist=nlist, nprobe=nprobe)
        rows.append({"features": name, "items": len(x), "dim": x.shape[1], "method": "faiss", "nlist": nlist,
                     "nprobe": nprobe, "seconds": round(t, 2), "speed-up": round(t_exact / t, 1),
                     "recall": round(neighbour_recall(cols[queries], exact), 4)})
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    return rows


@exit_on_user_error
def main(argv: list[str]) -> None:
    cfg = load_config(KnnRecallConfig, argv)
    torch.set_num_threads(cfg.threads)
    if cfg.scale_items:
        rows = search_rows(f"clustered-{cfg.scale_items}", _clustered(cfg.scale_items, cfg.scale_dim), cfg.k,
                           cfg.nprobes, cfg.exact_queries)
        print(format_table(rows))
        return
    data = _data(cfg)
    rows = [r for m, x in data.features.items() for r in search_rows(m, x, cfg.k, cfg.nprobes)]
    print(format_table(rows))
    trained = []
    if cfg.epochs:
        trainer = TrainerConfig(epochs=cfg.epochs, patience=cfg.epochs, num_threads=cfg.threads)
        for method in ("exact", "faiss"):
            r = train_model("freedom", {"knn_k": cfg.k, "knn_method": method}, trainer, data)
            trained.append({"model": "freedom", "knn_method": method, "best_epoch": r.best_epoch,
                            "seconds": round(r.seconds, 1), "valid R@20": r.best_valid["recall@20"],
                            "test R@20": r.test_at_best["recall@20"], "test N@20": r.test_at_best["ndcg@20"]})
            print(format_table(trained[-1:]).splitlines()[-1], flush=True)
        print(format_table(trained))
    if cfg.out:
        Path(cfg.out).write_text(json.dumps({"search": rows, "freedom": trained}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
