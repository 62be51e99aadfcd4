"""BPR training batches as MMRec draws them (ALGORITHMS.md §1.4), vectorized with numpy."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from raymmrec.errors import DataError
from raymmrec.recsys.interaction_data import InteractionData

_MAX_REDRAWS = 10_000


@dataclass
class Batch:
    """One training batch: users, their positive items and (unless the model samples none) one negative each."""

    users: torch.Tensor
    pos_items: torch.Tensor
    neg_items: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.users)

    def shard(self, rank: int, world: int) -> tuple["Batch", float]:
        """This rank's contiguous part of the batch and its loss weight (its share of the rows times `world`)."""
        # The mean over ranks of the weighted losses is the whole batch's loss; a rank left without rows (a batch
        # smaller than `world`) takes row 0 at weight 0, so every rank still steps (DeepSpeed's collectives).
        n = len(self)
        lo, hi = rank * n // world, (rank + 1) * n // world
        weight = (hi - lo) * world / n
        if hi == lo:
            lo, hi = 0, 1
        part = slice(lo, hi)
        return Batch(self.users[part], self.pos_items[part],
                     None if self.neg_items is None else self.neg_items[part]), weight


def train_keys(data: InteractionData) -> np.ndarray:
    """Sorted user * n_items + item of every distinct training pair (for vectorized membership tests)."""
    def build():
        t = data.train.copy()
        t.sort_indices()
        rows = np.repeat(np.arange(data.n_users, dtype=np.int64), np.diff(t.indptr))
        return rows * data.n_items + t.indices.astype(np.int64)
    return data._cached("train_keys", build)


def sample_negatives(users: np.ndarray, data: InteractionData, rng: np.random.Generator) -> np.ndarray:
    """One negative per user: uniform over the distinct training items, redrawn while in the user's train set."""
    pool, keys = data.train_item_pool, train_keys(data)
    neg = pool[rng.integers(0, len(pool), len(users))]
    todo = np.arange(len(users))
    for _ in range(_MAX_REDRAWS):
        query = users[todo] * data.n_items + neg[todo]
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        clash = keys[pos] == query
        if not clash.any():
            return neg
        todo = todo[clash]
        neg[todo] = pool[rng.integers(0, len(pool), len(todo))]
    raise DataError(f"user {int(users[todo[0]])} has interacted with every training item: no negative to sample")


class BPRSampler:
    """Each epoch: shuffle the training interactions, cut batches of `batch_size`, draw negatives per batch."""

    def __init__(self, data: InteractionData, batch_size: int = 2048, seed: int = 999, negatives: bool = True,
                 device: torch.device | str = "cpu") -> None:
        self.data = data
        self.users, self.items = data.train_pairs()
        self.batch_size = batch_size
        self.negatives = negatives
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def epoch(self) -> Iterator[Batch]:
        """The batches of one epoch, in a fresh random order."""
        order = self.rng.permutation(len(self.users))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            users, pos = self.users[idx], self.items[idx]
            neg = sample_negatives(users, self.data, self.rng) if self.negatives else None
            yield Batch(users=self._tensor(users), pos_items=self._tensor(pos),
                        neg_items=None if neg is None else self._tensor(neg))

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(self.device, non_blocking=True)

    def state_dict(self) -> dict[str, Any]:
        """The RNG state, so a resumed run draws the same batches as an uninterrupted one."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the RNG state saved by `state_dict`."""
        self.rng.bit_generator.state = state["rng"]
