import numpy as np
import pyarrow as pa
import pytest

from raymmrec.data.interactions import (dedupe_pairs, kcore_mask, process_interactions, reindex, split_interactions,
                                        split_labels)
from raymmrec.data.schema import RAW_INTERACTIONS_SCHEMA, TEST, TRAIN, VALID
from raymmrec.errors import DataError


def _naive_kcore(pairs: set[tuple[int, int]], k: int) -> set[tuple[int, int]]:
    while True:
        users, items = {}, {}
        for u, i in pairs:
            users[u] = users.get(u, 0) + 1
            items[i] = items.get(i, 0) + 1
        kept = {(u, i) for u, i in pairs if users[u] >= k and items[i] >= k}
        if kept == pairs:
            return kept
        pairs = kept


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kcore_reaches_the_fixed_point(k):
    rng = np.random.default_rng(k)
    user = rng.integers(0, 60, 700)
    item = np.minimum(rng.zipf(1.6, 700) - 1, 79)
    rows = dedupe_pairs(user, item, np.zeros(700, np.int64))
    user, item = user[rows], item[rows]
    keep = kcore_mask(user, item, k)
    kept = set(zip(user[keep].tolist(), item[keep].tolist()))
    assert kept == _naive_kcore(set(zip(user.tolist(), item.tolist())), k)
    assert 0 < len(kept) < len(user)   # the case exercises a real cascade
    assert np.bincount(user[keep]).max() >= k
    assert all(c == 0 or c >= k for c in np.bincount(user[keep])) and all(
        c == 0 or c >= k for c in np.bincount(item[keep]))


def test_dedupe_keeps_the_earliest_row_per_pair_in_file_order():
    user = np.array([0, 1, 0, 0, 1])
    item = np.array([5, 5, 5, 6, 5])
    ts = np.array([30, 10, 20, 40, 5])
    assert dedupe_pairs(user, item, ts).tolist() == [2, 3, 4]


def test_reindex_orders_by_first_appearance():
    new, old = reindex(np.array([7, 3, 7, 9, 3]))
    assert new.tolist() == [0, 1, 0, 2, 1]
    assert old.tolist() == [7, 3, 9]


# MMRec's preprocessing/1splitting.ipynb, per user with n rows in (shuffled) order: n < 10 gives n-2 / 1 / 1;
# otherwise int(n * 0.2) rows are held out, valid gets half of them rounded down and test the rest. By hand:
MMREC_SPLIT_TABLE = {   # n: (train, valid, test)
    3: (1, 1, 1),       # n < 10: one each to valid and test
    9: (7, 1, 1),
    10: (8, 1, 1),      # int(2.0) = 2 held out: 1 valid, 1 test
    15: (12, 1, 2),     # int(3.0) = 3: 1 valid, 2 test
    19: (16, 1, 2),     # int(3.8) = 3
    20: (16, 2, 2),     # int(4.0) = 4
}


def _notebook_counts(n: int) -> tuple[int, int, int]:
    """The notebook's rule as it is written there, float product included."""
    if n < 10:
        return n - 2, 1, 1
    held_out = int(n * 0.2)
    return n - held_out, held_out // 2, held_out - held_out // 2


def _counts(labels: np.ndarray) -> tuple[int, int, int]:
    return tuple(int((labels == s).sum()) for s in (TRAIN, VALID, TEST))


@pytest.mark.parametrize("n", sorted(MMREC_SPLIT_TABLE))
def test_split_counts_match_the_hand_table(n):
    assert _notebook_counts(n) == MMREC_SPLIT_TABLE[n]         # the table is MMRec's rule
    labels = split_labels(np.arange(n), np.full(n, n))
    assert _counts(labels) == MMREC_SPLIT_TABLE[n]
    assert (np.diff(labels) >= 0).all()                        # train first, then valid, then test along the order


def test_split_of_many_users_matches_the_table_user_by_user():
    sizes = list(MMREC_SPLIT_TABLE) * 3
    rng = np.random.default_rng(5)
    user = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))   # rows of users interleaved
    for method in ("random", "chronological"):
        labels = split_interactions(user, rng.integers(0, 100, len(user)), method, seed=0)
        for u, n in enumerate(sizes):
            assert _counts(labels[user == u]) == MMREC_SPLIT_TABLE[n], (method, n)


def test_split_counts_equal_the_notebooks_float_rule_for_every_size():
    n = np.arange(3, 2_001)
    labels_by_n = {int(k): _notebook_counts(int(k)) for k in n}
    rank = np.concatenate([np.arange(k) for k in n])
    labels = split_labels(rank, np.repeat(n, n))
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    for split, col in ((VALID, 1), (TEST, 2)):
        got = np.add.reduceat((labels == split).astype(np.int64), starts)
        assert got.tolist() == [labels_by_n[int(k)][col] for k in n]


@pytest.mark.parametrize("n", [0, 1, 2])
def test_users_with_fewer_than_3_rows_stay_in_train(n):
    assert _counts(split_labels(np.arange(n), np.full(n, n))) == (n, 0, 0)


def test_random_split_is_per_user_seeded_and_shuffled():
    rng = np.random.default_rng(0)
    sizes = rng.integers(3, 40, 200)
    user = np.repeat(np.arange(200), sizes)
    ts = rng.integers(0, 10**6, len(user))
    a = split_interactions(user, ts, "random", seed=1)
    assert np.array_equal(a, split_interactions(user, ts, "random", seed=1))
    assert not np.array_equal(a, split_interactions(user, ts, "random", seed=2))
    for u, n in enumerate(sizes):
        got = [int((a[user == u] == s).sum()) for s in (TRAIN, VALID, TEST)]
        m = n // 5
        assert got == ([n - 2, 1, 1] if n < 10 else [n - m, m // 2, m - m // 2])
    # Not chronological: some test rows are older than some train rows of the same user.
    older = sum(ts[(user == u) & (a == TEST)].min() < ts[(user == u) & (a == TRAIN)].max() for u in range(200))
    assert older > 100


def test_chronological_split_puts_the_latest_rows_last():
    rng = np.random.default_rng(1)
    sizes = rng.integers(3, 40, 150)
    user = np.repeat(np.arange(150), sizes)
    rng.shuffle(user)
    ts = rng.integers(0, 1000, len(user))     # ties happen and are broken at random
    labels = split_interactions(user, ts, "chronological", seed=0)
    for u, n in enumerate(sizes):
        mine, lab = ts[user == u], labels[user == u]
        assert mine[lab == TRAIN].max() <= mine[lab == VALID].min()
        assert mine[lab == VALID].max() <= mine[lab == TEST].min()
        assert (lab == TEST).sum() == (1 if n < 10 else n // 5 - n // 5 // 2)


def test_process_interactions_maps_ids_back_to_the_raw_ids():
    rng = np.random.default_rng(3)
    n = 3000
    raw_user = [f"user-{u}" for u in rng.integers(0, 120, n)]
    raw_item = [f"item-{i}" for i in rng.integers(0, 60, n)]
    ts = rng.integers(0, 10**9, n)
    raw = pa.table({"user_id": raw_user, "item_id": raw_item, "rating": pa.array(np.ones(n, np.float32)),
                    "timestamp": ts}, schema=RAW_INTERACTIONS_SCHEMA)
    out = process_interactions(raw, kcore=5, split="random", seed=0, source="test")
    t = out.table
    pairs = set(zip(out.user_ids.take(t.column("user")).to_pylist(), out.item_ids.take(t.column("item")).to_pylist()))
    assert pairs <= set(zip(raw_user, raw_item))
    assert len(pairs) == t.num_rows   # implicit: one row per pair
    assert t.column("user").to_numpy().max() + 1 == len(out.user_ids) == len(set(out.user_ids.to_pylist()))
    assert out.counts["raw_rows"] == n and out.counts["after_kcore"] == t.num_rows


def test_process_interactions_output_is_the_k_core_of_the_deduped_pairs():
    rng = np.random.default_rng(7)
    n = 2500
    user = rng.integers(0, 400, n)
    item = np.minimum(rng.zipf(1.4, n), 250)              # a long tail of rare items that 5-core cuts
    again = rng.choice(n, 800)                             # repeated pairs, later: they must count once
    user, item = np.concatenate([user, user[again]]), np.concatenate([item, item[again]])
    ts = np.arange(len(user))
    raw = pa.table({"user_id": [f"u{u}" for u in user], "item_id": [f"i{i}" for i in item],
                    "rating": pa.array(np.ones(len(user), np.float32)), "timestamp": ts},
                   schema=RAW_INTERACTIONS_SCHEMA)
    out = process_interactions(raw, kcore=5, split="random", seed=0, source="test")
    t = out.table
    users, items = t.column("user").to_numpy(), t.column("item").to_numpy()
    assert np.bincount(users).min() >= 5 and np.bincount(items).min() >= 5
    pairs = set(zip(out.user_ids.take(t.column("user")).to_pylist(), out.item_ids.take(t.column("item")).to_pylist()))
    raw_pairs = {(f"u{u}", f"i{i}") for u, i in zip(user, item)}
    assert pairs == {(f"u{u}", f"i{i}") for u, i in _naive_kcore(set(zip(user.tolist(), item.tolist())), 5)}
    assert len(pairs) == t.num_rows and 0 < len(pairs) < len(raw_pairs) / 2     # a real cascade, no duplicates


def test_empty_result_after_kcore_is_a_clear_error():
    raw = pa.table({"user_id": ["a", "b"], "item_id": ["x", "y"], "rating": pa.array([5.0, 4.0], pa.float32()),
                    "timestamp": [1, 2]}, schema=RAW_INTERACTIONS_SCHEMA)
    with pytest.raises(DataError, match="no interactions left after 5-core"):
        process_interactions(raw, kcore=5, split="random", seed=0, source="reviews file 'r.json'")
