import math

import numpy as np
import pytest
import torch

from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.metrics import evaluate_splits, full_ranking_metrics, popularity_scores


def _reference(scores: np.ndarray, data: InteractionData, split: str, ks, cold_only: bool) -> dict[str, float]:
    """Obviously-correct loops: mask train items, sort, count hits against the target list."""
    target_matrix = data.split(split).toarray()
    train = data.train.toarray()
    cold = data.cold_items
    totals = {f"{m}@{k}": 0.0 for m in ("recall", "ndcg") for k in ks}
    n_users = 0
    for u in range(data.n_users):
        targets = []
        for i in range(data.n_items):
            if not cold_only or cold[i]:
                targets += [i] * int(target_matrix[u, i])
        if not targets:
            continue
        n_users += 1
        s = [(-1e10 if train[u, i] > 0 else float(scores[u, i]), i) for i in range(data.n_items)]
        ranking = [i for _, i in sorted(s, key=lambda x: -x[0])]
        for k in ks:
            hits = [1 if ranking[r] in targets else 0 for r in range(min(k, len(ranking)))]
            totals[f"recall@{k}"] += sum(hits) / len(targets)
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(targets), k)))
            totals[f"ndcg@{k}"] += dcg / idcg
    return {key: v / max(n_users, 1) for key, v in totals.items()}


def _random_data(seed: int) -> InteractionData:
    rng = np.random.default_rng(seed)
    n_users, n_items, n = 37, 60, 700
    users = rng.integers(0, n_users, n)
    items = np.minimum(rng.zipf(1.5, n), n_items) - 1   # popular head, cold tail
    splits = rng.choice([0, 0, 0, 1, 2], n)            # duplicates of (user, item) occur
    return InteractionData.from_arrays(users, items, splits, n_users, n_items)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("user_batch", [5, 1000])
def test_matches_slow_reference(seed, user_batch):
    data = _random_data(seed)
    scores = np.random.default_rng(seed + 10).random((data.n_users, data.n_items)).astype(np.float32)
    table = torch.from_numpy(scores)
    ks = (3, 10, 20, 50)
    got = evaluate_splits(lambda users: table[users].clone(), data, ("valid", "test"), ks, user_batch=user_batch)
    assert data.cold_items.any() and (~data.cold_items).any()
    for split in ("valid", "test"):
        want = _reference(scores, data, split, ks, cold_only=False)
        want_cold = _reference(scores, data, split, ks, cold_only=True)
        for key in want:
            assert got[split][key] == pytest.approx(want[key], abs=1e-9), (split, key)
            assert got[split]["cold_" + key] == pytest.approx(want_cold[key], abs=1e-9), (split, "cold", key)


def test_hand_computed_example():
    # One user; items 0..5; train item 0; valid item 3; test items 1 and 4 (4 twice).
    data = InteractionData.from_arrays(
        users=[0, 0, 0, 0, 0], items=[0, 3, 1, 4, 4], splits=[0, 1, 2, 2, 2], n_users=1, n_items=6)
    scores = torch.tensor([[9.0, 1.0, 5.0, 8.0, 7.0, 0.5]])
    test = full_ranking_metrics(lambda u: scores[u].clone(), data, "test", ks=(1, 2, 3))
    # Ranking with item 0 masked: 3, 4, 2, 1, 5 — validation item 3 stays a candidate (and a miss).
    assert test["recall@1"] == 0.0
    assert test["recall@2"] == pytest.approx(1 / 3)            # hit item 4; |T_u| = 3 with the duplicate
    assert test["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    valid = full_ranking_metrics(lambda u: scores[u].clone(), data, "valid", ks=(1,))
    assert valid["recall@1"] == 1.0 and valid["ndcg@1"] == 1.0


def test_popularity_baseline_ranks_by_training_counts():
    # Training counts: item 0 ×3, item 1 ×2, item 2 ×1, item 3 ×0.
    data = InteractionData.from_arrays(
        users=[0, 1, 2, 1, 2, 2, 0, 1], items=[0, 0, 0, 1, 1, 2, 1, 3], splits=[0, 0, 0, 0, 0, 0, 1, 2],
        n_users=3, n_items=4)
    pop = popularity_scores(data)
    # user 0 (train {0}) ranks 1 first: its valid target → hit; user 1 (train {0, 1}) ranks 2 then 3.
    assert full_ranking_metrics(pop, data, "valid", ks=(1,))["recall@1"] == 1.0
    test = full_ranking_metrics(pop, data, "test", ks=(1, 2))
    assert test["recall@1"] == 0.0 and test["recall@2"] == 1.0


def test_score_blocks_shrink_to_the_memory_budget(monkeypatch):
    from raymmrec.recsys import metrics

    data = _random_data(2)
    table = torch.from_numpy(np.random.default_rng(3).random((data.n_users, data.n_items)).astype(np.float32))
    whole = evaluate_splits(lambda users: table[users].clone(), data, ("test",), (10,), user_batch=4096)
    # a budget of 4 users' float32 rows: a 4,096-user request is scored 4 users at a time, with the same metrics
    monkeypatch.setattr(metrics, "SCORE_BLOCK_BYTES", 4 * 4 * data.n_items)
    seen = []
    blocked = evaluate_splits(lambda users: seen.append(len(users)) or table[users].clone(), data, ("test",), (10,),
                              user_batch=4096)
    assert max(seen) == 4 and sum(seen) == len(np.unique(data.test.nonzero()[0]))
    assert blocked == whole
    assert metrics.users_per_block(1024, 63_001, 2 << 30) == 1024     # Electronics: the request stands
    assert metrics.users_per_block(4096, 630_010, 2 << 30) == 852     # ten times the catalogue: 2 GiB blocks
    assert metrics.users_per_block(10, 10**12, 2 << 30) == 1
