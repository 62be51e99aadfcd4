"""Planted-cluster interactions built in memory in seconds at any size, for recsys tests and benchmarks.

Items and users belong to latent clusters; users mostly pick items of their own cluster, weighted by a
long-tail popularity; item features are noisy cluster centroids (text cleaner than image). So ID models
learn the clusters from co-occurrence, and content models can place cold items by their features.
The full dataset dir with images and text comes from `raymmrec.data.synth`; this is the recsys-only twin.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from raymmrec.data import schema
from raymmrec.recsys.interaction_data import InteractionData

SIZES = {  # users, items, interactions (5-core Amazon figures of ALGORITHMS.md §6.1)
    "tiny": (300, 200, 3_000),
    "small": (2_000, 1_000, 20_000),
    "baby": (19_445, 7_050, 160_792),
    "electronics": (192_403, 63_001, 1_689_188),
}


@dataclass
class PlantedInteractions:
    """Parallel interaction arrays (split as in MMRec's `.inter` x_label) and item features."""

    users: np.ndarray
    items: np.ndarray
    splits: np.ndarray
    n_users: int
    n_items: int
    features: dict[str, np.ndarray] = field(default_factory=dict)
    item_clusters: np.ndarray | None = None

    def to_data(self, name: str = "planted") -> InteractionData:
        """As InteractionData (feature set `raw`)."""
        return InteractionData.from_arrays(self.users, self.items, self.splits, self.n_users, self.n_items,
                                           self.features, name=name, feature_set="raw" if self.features else None)


def _mmrec_split(users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MMRec's per-user random split: n<10 → n-2/1/1; else ⌊0.2n⌋ held out, half valid, the rest test."""
    order = np.lexsort((rng.random(len(users)), users))
    u = users[order]
    counts = np.bincount(u)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(u)) - start[u]
    n = counts[u]
    m = np.where(n < 10, 2, (0.2 * n).astype(np.int64))
    n_valid = np.where(n < 10, 1, m // 2)
    split = np.full(len(u), schema.TRAIN, dtype=np.int8)
    split[rank >= n - m] = schema.VALID
    split[rank >= n - m + n_valid] = schema.TEST
    out = np.empty_like(split)
    out[order] = split
    return out


def planted_interactions(size: str = "tiny", n_users: int | None = None, n_items: int | None = None,
                         n_interactions: int | None = None, n_clusters: int = 20, in_cluster: float = 0.8,
                         dims: dict[str, int] | None = None, noise: dict[str, float] | None = None,
                         seed: int = 0) -> PlantedInteractions:
    """Generate planted-cluster interactions of a named size (or explicit counts) and cluster-centroid features."""
    rng = np.random.default_rng(seed)
    nu, ni, nx = SIZES[size]
    nu, ni, nx = n_users or nu, n_items or ni, n_interactions or nx
    dims = {"text": 384, "image": 4096} if dims is None else dims   # {}: no features
    noise = {"text": 1.0, "image": 2.0} if noise is None else noise
    item_cluster = rng.integers(0, n_clusters, ni)
    user_cluster = rng.integers(0, n_clusters, nu)
    popularity = rng.pareto(1.2, ni) + 1.0
    # Per-cluster popularity CDFs laid end to end: cluster c occupies (c, c+1].
    by_cluster = np.argsort(item_cluster, kind="stable")
    pop_sorted = popularity[by_cluster]
    cl_sorted = item_cluster[by_cluster]
    cl_total = np.bincount(cl_sorted, weights=pop_sorted, minlength=n_clusters)
    within = np.cumsum(pop_sorted) - np.concatenate([[0], np.cumsum(cl_total)[:-1]])[cl_sorted]
    cluster_cdf = cl_sorted + within / cl_total[cl_sorted]
    global_cdf = np.cumsum(popularity) / popularity.sum()
    # Users get at least 5 interactions and a long-tailed activity; oversample, then dedupe.
    per_user = 5 + rng.geometric(1.0 / max(nx / nu - 4.0, 1.01), nu) - 1
    users = np.repeat(np.arange(nu), np.ceil(per_user * 1.15).astype(np.int64))
    own = rng.random(len(users)) < in_cluster
    items = np.empty(len(users), dtype=np.int64)
    q = user_cluster[users[own]] + rng.random(int(own.sum()))
    items[own] = by_cluster[np.minimum(np.searchsorted(cluster_cdf, q), ni - 1)]
    items[~own] = np.minimum(np.searchsorted(global_cdf, rng.random(int((~own).sum()))), ni - 1)
    keys = np.unique(users * ni + items)
    users, items = keys // ni, keys % ni
    counts = np.bincount(users, minlength=nu)
    keep_users = counts >= 3   # MMRec's split keeps at least 3 per user; drop users left below it
    sel = keep_users[users]
    remap = np.cumsum(keep_users) - 1
    users, items = remap[users[sel]], items[sel]
    nu = int(keep_users.sum())
    splits = _mmrec_split(users, rng)
    features = {}
    for modality, dim in dims.items():
        centroids = rng.standard_normal((n_clusters, dim), dtype=np.float32)
        feats = rng.standard_normal((ni, dim), dtype=np.float32)
        feats *= np.float32(noise.get(modality, 1.0))
        feats += centroids[item_cluster]
        features[modality] = feats
    return PlantedInteractions(users=users.astype(np.int64), items=items.astype(np.int64), splits=splits,
                               n_users=nu, n_items=ni, features=features, item_clusters=item_cluster)
