"""Raw ratings → implicit interactions: dedupe, iterative k-core, re-indexing and the per-user split."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymmrec.data.schema import INTERACTIONS_SCHEMA, TEST, TRAIN, VALID
from raymmrec.errors import DataError

SplitMethod = Literal["random", "chronological"]


@dataclass
class ProcessedInteractions:
    """Interactions after filtering: the dataset-dir table plus the raw ids behind the new 0-based ids."""

    table: pa.Table              # INTERACTIONS_SCHEMA
    user_ids: pa.Array           # raw user id of new user u at position u
    item_ids: pa.Array           # raw item id of new item i at position i
    counts: dict[str, int]       # rows at each pipeline step (for stats / MLflow)


def encode_ids(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Integer codes of raw ids (plain or already dictionary-encoded) and the distinct values they index."""
    if not pa.types.is_dictionary(values.type):
        values = pc.dictionary_encode(values)
    if isinstance(values, pa.ChunkedArray):
        values = values.unify_dictionaries().combine_chunks() if values.num_chunks else pa.array([], values.type)
    return values.indices.to_numpy(zero_copy_only=False), values.dictionary


def dedupe_pairs(user: np.ndarray, item: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """Row indices keeping one row per (user, item): the earliest, in the original row order."""
    key = user.astype(np.int64) * (int(item.max(initial=0)) + 1) + item.astype(np.int64)
    order = np.lexsort((timestamp, key))
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    return np.sort(order[first])


def kcore_mask(user: np.ndarray, item: np.ndarray, k: int) -> np.ndarray:
    """Rows kept by iterative k-core: every kept user and item has >= k kept rows (a fixed point)."""
    keep = np.ones(len(user), dtype=bool)
    if k <= 1:
        return keep
    n_users = int(user.max(initial=-1)) + 1
    n_items = int(item.max(initial=-1)) + 1
    while True:
        u, i = user[keep], item[keep]
        ucount = np.bincount(u, minlength=n_users)
        icount = np.bincount(i, minlength=n_items)
        ok = (ucount[u] >= k) & (icount[i] >= k)
        if ok.all():
            return keep
        idx = np.flatnonzero(keep)
        keep[idx[~ok]] = False


def reindex(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous ids in order of first appearance; returns (new codes, old code of each new id)."""
    uniq, first = np.unique(codes, return_index=True)
    old_of_new = uniq[np.argsort(first, kind="stable")]
    lookup = np.empty(int(uniq.max(initial=-1)) + 1, dtype=np.int64)
    lookup[old_of_new] = np.arange(len(old_of_new))
    return lookup[codes], old_of_new


def _rank_within_user(user: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each row within its user under `order` (rows grouped by user), and the user's row count."""
    counts = np.bincount(user)
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(user), dtype=np.int64)
    rank[order] = np.arange(len(order)) - starts[user[order]]
    return rank, counts[user]


def split_labels(rank: np.ndarray, n: np.ndarray) -> np.ndarray:
    """MMRec's per-user rule on a row's rank among its user's n rows: n<10 → n-2/1/1, else 8:1:1 by floor."""
    m = n // 5                                     # == floor(0.2 n) for integers
    n_valid = np.where(n < 10, 1, m // 2)
    n_test = np.where(n < 10, 1, m - m // 2)
    n_train = n - n_valid - n_test
    # Users with fewer than 3 rows cannot give one row to each split; they stay in train.
    small = n < 3
    n_train = np.where(small, n, n_train)
    labels = np.full(len(rank), TRAIN, dtype=np.int8)
    labels[rank >= n_train] = VALID
    labels[(rank >= n_train + n_valid) & ~small] = TEST
    return labels


def split_interactions(user: np.ndarray, timestamp: np.ndarray, method: SplitMethod, seed: int) -> np.ndarray:
    """Per-user train/valid/test labels: random order (MMRec, seeded) or chronological (latest rows to test)."""
    if len(user) == 0:
        return np.zeros(0, dtype=np.int8)
    tiebreak = np.random.default_rng(seed).random(len(user))
    if method == "random":
        order = np.lexsort((tiebreak, user))
    elif method == "chronological":
        order = np.lexsort((tiebreak, timestamp, user))
    else:
        raise DataError(f"unknown split method '{method}' (expected random or chronological)")
    rank, n = _rank_within_user(user, order)
    return split_labels(rank, n)


def process_interactions(raw: pa.Table, kcore: int, split: SplitMethod, seed: int,
                         source: str) -> ProcessedInteractions:
    """Raw (user_id, item_id, rating, timestamp) rows → deduped, k-cored, re-indexed and split interactions.

    The id columns may be strings or dictionary-encoded strings (the streaming readers encode chunk by chunk).
    """
    counts = {"raw_rows": raw.num_rows}
    if raw.num_rows == 0:
        raise DataError(f"{source}: no interactions were read")
    ucode, user_vals = encode_ids(raw.column("user_id"))
    icode, item_vals = encode_ids(raw.column("item_id"))
    ts_col = raw.column("timestamp")
    ts = pc.fill_null(ts_col, 0).to_numpy().astype(np.int64)
    rating = pc.fill_null(raw.column("rating"), 1.0).to_numpy().astype(np.float32)

    rows = dedupe_pairs(ucode, icode, ts)
    counts["implicit_pairs"] = len(rows)
    ucode, icode, ts, rating = ucode[rows], icode[rows], ts[rows], rating[rows]

    keep = kcore_mask(ucode, icode, kcore)
    counts["after_kcore"] = int(keep.sum())
    if not keep.any():
        raise DataError(
            f"{source}: no interactions left after {kcore}-core filtering ({len(rows)} interactions of "
            f"{len(np.unique(ucode))} users and {len(np.unique(icode))} items before); lower kcore")
    ucode, icode, ts, rating = ucode[keep], icode[keep], ts[keep], rating[keep]
    user, user_old = reindex(ucode)
    item, item_old = reindex(icode)
    labels = split_interactions(user, ts, split, seed)
    table = pa.table({
        "user": pa.array(user.astype(np.int32)),
        "item": pa.array(item.astype(np.int32)),
        "rating": pa.array(rating),
        "timestamp": pa.array(ts),
        "split": pa.array(labels),
    }, schema=INTERACTIONS_SCHEMA)
    return ProcessedInteractions(table, user_vals.take(pa.array(user_old)), item_vals.take(pa.array(item_old)), counts)
