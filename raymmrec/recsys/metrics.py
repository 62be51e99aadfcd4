"""Full-ranking Recall@K / NDCG@K over all items, in user batches, as MMRec computes them (ALGORITHMS.md §1.6)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from raymmrec.recsys.interaction_data import InteractionData

ScoreFn = Callable[[torch.Tensor], torch.Tensor]   # user ids (long, on device) → scores (len(users) × n_items)
MASKED_SCORE = -1e10                                 # MMRec's score for training items
# A users × items float32 score block above this is cut into fewer users: at Electronics' 63k items 4,096
# users are 1.0 GB, at ten times the catalogue the same block would be 10 GB.
SCORE_BLOCK_BYTES = 2 << 30


def users_per_block(requested: int, n_items: int, budget_bytes: int | None = None) -> int:
    """The user batch to score at once: `requested`, fewer when users × n_items float32 scores exceed the budget."""
    budget = SCORE_BLOCK_BYTES if budget_bytes is None else budget_bytes
    return max(1, min(int(requested), budget // (4 * max(int(n_items), 1))))


@dataclass
class _SplitTargets:
    keys: torch.Tensor         # sorted row_position * n_items + item of every target
    n_targets: torch.Tensor    # |T_u| per eval-user row (duplicates counted)
    cold_keys: torch.Tensor
    n_cold: torch.Tensor


@dataclass
class _EvalPlan:
    users: torch.Tensor        # eval users (union over the splits), ascending
    train_indptr: torch.Tensor
    train_items: torch.Tensor
    targets: dict[str, _SplitTargets]


def _targets(matrix, users: np.ndarray, cold: np.ndarray, n_items: int, device) -> _SplitTargets:
    sub = matrix[users].tocsr()
    sub.sort_indices()
    rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(sub.indptr))
    cols = sub.indices.astype(np.int64)
    counts = sub.data.astype(np.float64)
    is_cold = cold[cols]

    def per_row(weights):
        return torch.as_tensor(np.bincount(rows, weights=weights, minlength=len(users)), device=device)

    keys = rows * n_items + cols
    return _SplitTargets(keys=torch.as_tensor(keys, device=device), n_targets=per_row(counts),
                         cold_keys=torch.as_tensor(keys[is_cold], device=device), n_cold=per_row(counts * is_cold))


def _plan(data: InteractionData, splits: tuple[str, ...], device) -> _EvalPlan:
    key = ("eval_plan", splits, str(device))
    if key not in data._cache:
        users = np.unique(np.concatenate([np.flatnonzero(np.diff(data.split(s).indptr)) for s in splits]))
        train = data.train[users].tocsr()
        data._cache[key] = _EvalPlan(
            users=torch.as_tensor(users, device=device),
            train_indptr=torch.as_tensor(train.indptr.astype(np.int64), device=device),
            train_items=torch.as_tensor(train.indices.astype(np.int64), device=device),
            targets={s: _targets(data.split(s), users, data.cold_items, data.n_items, device) for s in splits})
    return data._cache[key]


class _Accumulator:
    """Sums of per-user Recall@K and NDCG@K over users with at least one target."""

    def __init__(self, ks: Sequence[int], device) -> None:
        self.ks = list(ks)
        kmax = max(ks)
        self.discount = 1.0 / torch.log2(torch.arange(2, kmax + 2, dtype=torch.float64, device=device))
        self.ideal = torch.cumsum(self.discount, 0)   # ideal[m-1] = IDCG with m relevant items
        self.sums = torch.zeros(2, len(ks), dtype=torch.float64, device=device)
        self.users = 0

    def add(self, hits: torch.Tensor, n_targets: torch.Tensor) -> None:
        has = n_targets > 0
        if not bool(has.any()):
            return
        hits, n = hits[has].to(torch.float64), n_targets[has]
        self.users += int(has.sum())
        dcg = torch.cumsum(hits * self.discount[: hits.shape[1]], dim=1)
        found = torch.cumsum(hits, dim=1)
        for j, k in enumerate(self.ks):
            last = min(k, hits.shape[1]) - 1      # K beyond the number of items: the whole ranking
            self.sums[0, j] += (found[:, last] / n).sum()
            ideal = self.ideal[(torch.clamp(n, max=k) - 1).long()]
            self.sums[1, j] += (dcg[:, last] / ideal).sum()

    def result(self, prefix: str = "") -> dict[str, float]:
        out = {}
        for j, k in enumerate(self.ks):
            denom = max(self.users, 1)
            out[f"{prefix}recall@{k}"] = float(self.sums[0, j]) / denom
            out[f"{prefix}ndcg@{k}"] = float(self.sums[1, j]) / denom
        return out


def _is_hit(keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    if keys.numel() == 0:
        return torch.zeros_like(query, dtype=torch.bool)
    pos = torch.searchsorted(keys, query).clamp_(max=keys.numel() - 1)
    return keys[pos] == query


@torch.no_grad()
def evaluate_splits(score_fn: ScoreFn, data: InteractionData, splits: Sequence[str] = ("valid", "test"),
                    ks: Sequence[int] = (10, 20, 50), user_batch: int = 4096,
                    device: torch.device | str = "cpu") -> dict[str, dict[str, float]]:
    """Recall@K / NDCG@K (overall and on cold-item targets) for several splits from ONE scoring pass.

    Training items are masked for every split and nothing else is (validation items stay candidates for
    test), so the top-K list is shared by all splits. Cold metrics keep the same ranking and count only
    targets that are cold items (< 5 training interactions), over users with at least one such target.
    """
    splits = tuple(splits)
    ks = sorted(set(int(k) for k in ks))
    kmax = min(max(ks), data.n_items)
    plan = _plan(data, splits, device)
    accs = {s: (_Accumulator(ks, device), _Accumulator(ks, device)) for s in splits}
    n_users = len(plan.users)
    user_batch = users_per_block(user_batch, data.n_items)
    for start in range(0, n_users, user_batch):
        stop = min(start + user_batch, n_users)
        scores = score_fn(plan.users[start:stop]).to(torch.float32)
        lo, hi = plan.train_indptr[start], plan.train_indptr[stop]
        rows = torch.repeat_interleave(torch.arange(stop - start, device=scores.device),
                                       plan.train_indptr[start + 1:stop + 1] - plan.train_indptr[start:stop])
        scores.index_put_((rows, plan.train_items[lo:hi]), torch.tensor(MASKED_SCORE, device=scores.device))
        top = torch.topk(scores, kmax, dim=1).indices
        del scores
        query = (torch.arange(start, stop, device=top.device).unsqueeze(1) * data.n_items) + top
        for s in splits:
            t = plan.targets[s]
            overall, cold = accs[s]
            overall.add(_is_hit(t.keys, query), t.n_targets[start:stop])
            cold.add(_is_hit(t.cold_keys, query), t.n_cold[start:stop])
    return {s: {**accs[s][0].result(), **accs[s][1].result("cold_")} for s in splits}


def full_ranking_metrics(score_fn: ScoreFn, data: InteractionData, split: str = "test",
                         ks: Sequence[int] = (10, 20, 50), user_batch: int = 4096,
                         device: torch.device | str = "cpu") -> dict[str, float]:
    """Recall@K and NDCG@K of one split (plus `cold_` variants), training items masked, users in batches."""
    return evaluate_splits(score_fn, data, (split,), ks, user_batch, device)[split]


def popularity_scores(data: InteractionData) -> ScoreFn:
    """The most-popular baseline: every user gets the items' training counts as scores."""
    counts = torch.as_tensor(data.train_item_counts, dtype=torch.float32)

    def score(users: torch.Tensor) -> torch.Tensor:
        return counts.to(users.device).expand(len(users), -1).clone()

    return score
