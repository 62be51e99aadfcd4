"""AlignRec's intermediate evaluation of item features (§4.4.2): zero-shot, item-CF and mask-modality recall.

Only item features are used (no IDs, no training) and only training interactions. Blockwise throughout: scores are
computed for `block_size` queries at a time, co-occurrence counts for `block_size` items at a time, so nothing is
n_items² in memory. Choices the paper leaves open (ALGORITHMS.md §3.6), fixed here:
  - similarity is cosine; a multi-modality set is the concatenation of its L2-normalised modalities
    (AlignRec concatenates vision and text for Amazon / CLIP features);
  - candidates are all items except, for zero-shot, the user's history (the target stays a candidate even when the
    user bought it before), and, for item-CF, the query item itself;
  - zero-shot: users with at least 2 training interactions; the target is the latest one (ties: the later row);
  - item-CF score: Sarwar et al.'s cosine between binary item columns of the training matrix; the target of item j
    is the item with the highest score (ties: lowest id); items with no co-occurring item are not queried;
  - ties in feature similarity are broken by item id, so constant (e.g. all-zero) features get no lucky hits;
  - mask-modality: x% of items (seeded) lose vision or text; separate modalities are zeroed (the AlignRec repo's
    rule for Amazon / CLIP features), a unified set (BEiT3) takes the item's single-modality CLS from
    `views/text_only.npy` / `views/image_only.npy`; then zero-shot and item-CF are repeated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from raymmrec import tracking
from raymmrec.data import schema
from raymmrec.errors import ConfigError, DataError
from raymmrec.feature_sets import VIEWS_DIR, blocks, feature_set_folder, load_feature_set

VISION_MODALITIES = ("image",)
UNIFIED_SUBSTITUTES = {"vision": "text_only", "text": "image_only"}   # what a unified item keeps when one is masked


@dataclass
class QualityConfig:
    """Which protocols run, at which cut-offs, and how much of the catalogue is masked."""

    enabled: bool = True
    ks: list[int] = field(default_factory=lambda: [10, 20, 50])
    mask_ratio: float = 0.5               # AlignRec Table 3: 50 %
    mask_modalities: list[str] = field(default_factory=lambda: ["vision", "text"])
    mask_seed: int = 0
    block_size: int = 1024                # queries (or items) per block


def check_quality_config(cfg: QualityConfig) -> None:
    """Reject settings the protocols cannot run with, naming the key."""
    if not cfg.ks or min(cfg.ks) < 1:
        raise ConfigError(f"quality.ks: expected positive cut-offs, got {cfg.ks}")
    if not 0.0 < cfg.mask_ratio <= 1.0:
        raise ConfigError(f"quality.mask_ratio must be in (0, 1], got {cfg.mask_ratio}")
    bad = [m for m in cfg.mask_modalities if m not in UNIFIED_SUBSTITUTES]
    if bad:
        raise ConfigError(f"quality.mask_modalities: expected vision and/or text, got {bad[0]!r}")
    if cfg.block_size < 1:
        raise ConfigError(f"quality.block_size must be at least 1, got {cfg.block_size}")


@dataclass
class TrainLog:
    """Training interactions in file order: the only input of every protocol."""

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    n_users: int
    n_items: int

    @classmethod
    def from_dataset_dir(cls, path: str | Path) -> "TrainLog":
        ds = schema.DatasetDir.at(path)
        table = schema.read_table(ds.interactions, schema.INTERACTIONS_SCHEMA,
                                  columns=["user", "item", "timestamp", "split"])
        train = table.filter(pc.equal(table["split"], schema.TRAIN))
        users = train["user"].to_numpy().astype(np.int64)
        n_users = pq.read_metadata(ds.users).num_rows if ds.users.is_file() else int(users.max()) + 1
        ts = train["timestamp"].fill_null(0).to_numpy().astype(np.int64)
        return cls(users, train["item"].to_numpy().astype(np.int64), ts, int(n_users),
                   pq.read_metadata(ds.items).num_rows)

    def matrix(self) -> sp.csr_matrix:
        """Binary users × items training matrix."""
        m = sp.csr_matrix((np.ones(len(self.users), np.float32), (self.users, self.items)),
                          shape=(self.n_users, self.n_items))
        m.data[:] = 1.0
        return m


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def item_matrix(features: dict[str, np.ndarray]) -> np.ndarray:
    """Unit rows of the concatenated unit-normalised modalities (zero rows stay zero)."""
    return _unit(np.concatenate([_unit(np.asarray(f, np.float32)) for f in features.values()], axis=1))


def zero_shot_queries(log: TrainLog) -> tuple[sp.csr_matrix, np.ndarray]:
    """(history counts users × items, target item) of users with ≥ 2 train rows; −1 target otherwise."""
    order = np.lexsort((np.arange(len(log.users)), log.timestamps, log.users))   # by user, time, row
    users, items = log.users[order], log.items[order]
    last = np.ones(len(users), bool)
    last[:-1] = users[1:] != users[:-1]
    counts = np.bincount(users, minlength=log.n_users)
    target = np.full(log.n_users, -1, np.int64)
    target[users[last]] = items[last]
    target[counts < 2] = -1
    hist = ~last & (target[users] >= 0)
    history = sp.csr_matrix((np.ones(int(hist.sum()), np.float32), (users[hist], items[hist])),
                            shape=(log.n_users, log.n_items))
    return history, target


def item_cf_targets(train: sp.csr_matrix, block_size: int) -> np.ndarray:
    """For each item, the other item with the highest item-CF (binary cosine) score; −1 when none co-occurs."""
    binary = train.copy()
    binary.data[:] = 1.0
    item_users = binary.T.tocsr()
    degree = np.asarray(item_users.sum(axis=1)).ravel()
    inv = 1.0 / np.sqrt(np.maximum(degree, 1.0))
    n = train.shape[1]
    target = np.full(n, -1, np.int64)
    for rows in blocks(n, block_size):
        co = (item_users[rows] @ binary).tocoo()        # co-occurrence counts of this block's items × all items
        r = co.row + rows.start
        keep = co.col != r
        r, c = r[keep], co.col[keep]
        score = co.data[keep] * inv[r] * inv[c]
        if not len(r):
            continue
        order = np.lexsort((c, -score, r))                # per row: best score first, then lowest id
        r, c = r[order], c[order]
        first = np.ones(len(r), bool)
        first[1:] = r[1:] != r[:-1]
        target[r[first]] = c[first]
    return target


def recall_at(queries: np.ndarray | Callable[[slice], np.ndarray], targets: np.ndarray, items: np.ndarray,
              exclude: sp.csr_matrix | None, ks: list[int], block_size: int) -> dict[int, float]:
    """Share of queries whose target ranks in the top K of cosine similarity (ties broken by item id).

    `queries` is an array or a function giving the query vectors of a slice of the queries (built per block).
    """
    rows_of = queries if callable(queries) else (lambda rows: queries[rows])
    hits = {k: 0 for k in ks}
    ids = np.arange(items.shape[0])
    for rows in blocks(len(targets), block_size):
        scores = _unit(np.asarray(rows_of(rows), np.float32)) @ items.T
        if exclude is not None:
            block = exclude[rows].tocoo()
            scores[block.row, block.col] = -np.inf
        t = targets[rows]
        ts = scores[np.arange(len(t)), t][:, None]
        rank = (scores > ts).sum(axis=1) + ((scores == ts) & (ids[None, :] < t[:, None])).sum(axis=1)
        for k in ks:
            hits[k] += int((rank < k).sum())
    return {k: hits[k] / max(len(targets), 1) for k in ks}


def zero_shot_recall(features: np.ndarray, history: sp.csr_matrix, target: np.ndarray, ks: list[int],
                     block_size: int) -> dict[int, float]:
    """User = mean of history features; candidates exclude the history except the target itself."""
    users = np.flatnonzero(target >= 0)
    hist = history[users]
    counts = np.maximum(np.asarray(hist.sum(axis=1)), 1.0)
    h = hist.tocoo()
    keep = h.col != target[users][h.row]
    exclude = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (h.row[keep], h.col[keep])), shape=hist.shape)
    return recall_at(lambda rows: (hist[rows] @ features) / counts[rows], target[users], features, exclude, ks,
                     block_size)


def item_cf_recall(features: np.ndarray, target: np.ndarray, ks: list[int], block_size: int) -> dict[int, float]:
    """Query = the item's own feature, candidates = every other item, target = its best item-CF neighbour."""
    items = np.flatnonzero(target >= 0)
    self_mask = sp.csr_matrix((np.ones(len(items), np.float32), (np.arange(len(items)), items)),
                              shape=(len(items), features.shape[0]))
    return recall_at(features[items], target[items], features, self_mask, ks, block_size)


def masked_features(features: dict[str, np.ndarray], folder: Path, modality: str, ratio: float,
                    seed: int) -> dict[str, np.ndarray] | None:
    """The feature set with `ratio` of the items' vision or text removed; None when the set cannot express it."""
    n = next(iter(features.values())).shape[0]
    chosen = np.random.default_rng(seed).permutation(n)[: int(round(ratio * n))]
    if len(features) == 1:
        substitute = folder / VIEWS_DIR / f"{UNIFIED_SUBSTITUTES[modality]}.npy"
        if not substitute.is_file():
            return None
        (name, arr), = features.items()
        out = np.array(arr, np.float32, copy=True)
        out[chosen] = np.load(substitute, mmap_mode="r")[chosen]
        return {name: out}
    hit = [m for m in features if (m in VISION_MODALITIES) == (modality == "vision")]
    if not hit or len(hit) == len(features):
        return None
    out = {}
    for name, arr in features.items():
        arr = np.array(arr, np.float32, copy=True) if name in hit else arr
        if name in hit:
            arr[chosen] = 0.0
        out[name] = arr
    return out


def feature_quality(features: dict[str, np.ndarray], log: TrainLog, cfg: QualityConfig,
                    folder: Path | None = None) -> dict[str, float]:
    """All protocols on one feature set: `{protocol}/recall@K` plus `{protocol}/queries`."""
    check_quality_config(cfg)
    history, zs_target = zero_shot_queries(log)
    cf_target = item_cf_targets(log.matrix(), cfg.block_size)
    out: dict[str, float] = {}

    def run(prefix: str, feats: dict[str, np.ndarray]) -> None:
        items = item_matrix(feats)
        for proto, rec, n_q in (
            ("zero_shot", zero_shot_recall(items, history, zs_target, cfg.ks, cfg.block_size), (zs_target >= 0).sum()),
            ("item_cf", item_cf_recall(items, cf_target, cfg.ks, cfg.block_size), (cf_target >= 0).sum()),
        ):
            out.update({f"{prefix}{proto}/recall@{k}": round(v, 6) for k, v in rec.items()})
            out[f"{prefix}{proto}/queries"] = int(n_q)

    run("", features)
    for modality in cfg.mask_modalities:
        masked = masked_features(features, folder or Path("."), modality, cfg.mask_ratio, cfg.mask_seed)
        if masked is not None:
            run(f"mask_{modality}_{int(round(cfg.mask_ratio * 100))}/", masked)
    return out


def quality_report(dataset_dir: str | Path, feature_set: str, cfg: QualityConfig | None = None) -> dict[str, float]:
    """Feature-quality metrics of a feature set (a folder, or a name in the dataset dir) on the dataset's training
    interactions."""
    cfg = cfg or QualityConfig()
    ds = schema.DatasetDir.at(dataset_dir)
    folder = feature_set_folder(ds.root, feature_set)
    if not folder.is_dir():
        raise DataError(f"dataset dir '{ds.root}' has no feature set '{feature_set}' "
                        f"(available: {', '.join(ds.feature_sets()) or 'none'}), and it is no feature-set folder")
    features, _ = load_feature_set(folder)
    return feature_quality(features, TrainLog.from_dataset_dir(ds.root), cfg, folder)


def quality_rows(reports: dict[str, dict[str, float]], ks: list[int]) -> list[dict]:
    """One row per (feature set, protocol) with recall@K columns: the table a person reads."""
    rows = []
    for name, metrics in reports.items():
        protocols = sorted({k.rsplit("/", 1)[0] for k in metrics if "/recall@" in k}, key=lambda p: (p.count("/"), p))
        for proto in protocols:
            rows.append({"features": name, "protocol": proto,
                         **{f"R@{k}": metrics.get(f"{proto}/recall@{k}", float("nan")) for k in ks},
                         "queries": metrics.get(f"{proto}/queries", 0)})
    return rows


def format_rows(rows: list[dict]) -> str:
    """Plain-text table of `quality_rows`."""
    if not rows:
        return "(no quality rows)"
    cols = list(rows[0])
    cells = [[f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows]
    width = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, width))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in width]), *(line(r) for r in cells)])


def log_quality(metrics: dict[str, float], rows: list[dict]) -> None:
    """Quality metrics and their table to the active MLflow run."""
    tracking.log_metrics({f"quality/{k}": v for k, v in metrics.items()})
    tracking.log_table(rows, "feature_quality.json")
