"""The generator's planted truth: items with a cluster, a style, continuous content attributes and a hidden
collaborative vector; users who prefer a few clusters, an ideal point over a few attributes and a hidden
taste; and the choice model that draws interactions from them (also the oracle scorer of the benchmarks)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from raymmrec.data.synth_content import ATTRIBUTES

COLLAB_DIM = 8
DAY = 86_400
T_START = 1_388_534_400   # 2014-01-01
T_END = 1_538_352_000     # 2018-10-01
MIN_USER_DEGREE = 5
USER_SPAN_DAYS = 240        # mean length of a user's active period
SCORE_CELLS = 1 << 22       # (interactions × candidate items) scored at once: bounds memory at any size


@dataclass
class Preferences:
    """How strongly each planted part drives a choice (log-odds units)."""

    attribute_strength: float
    collab_strength: float
    style_strength: float
    popularity_weight: float
    off_preference: float


@dataclass
class Latents:
    """The planted truth, indexed by the generator's raw item / user index."""

    item_cluster: np.ndarray      # [I]
    item_style: np.ndarray        # [I]
    item_family: np.ndarray       # [I] product family (variants of one product)
    item_attributes: np.ndarray   # [I, A] in [0, 1], see synth_content.ATTRIBUTES
    item_collab: np.ndarray       # [I, COLLAB_DIM], shown by no content
    item_popularity: np.ndarray   # [I] > 0
    item_release: np.ndarray      # [I] unix seconds
    item_price: np.ndarray        # [I]
    cluster_share: np.ndarray     # [C]
    user_clusters: np.ndarray     # [U, slots]
    user_weights: np.ndarray      # [U, slots], zero for unused slots
    user_styles: np.ndarray       # [U, slots]
    user_ideal: np.ndarray        # [U, A] the attribute values a user looks for
    user_importance: np.ndarray   # [U, A] >= 0, non-zero on the few attributes the user cares about
    user_collab: np.ndarray       # [U, COLLAB_DIM]

    def subset(self, items: np.ndarray, users: np.ndarray) -> dict[str, np.ndarray]:
        """The truth arrays of the kept items / users, in their new id order (for synth_truth.npz)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value[items] if f.name.startswith("item_") else value[users] if f.name.startswith(
                "user_") else value
        return out


def draw_items(rng: np.random.Generator, n: int, n_clusters: int, n_styles: int, new_share: float,
               popularity_sigma: float, family_size: float, variant_spread: float) -> dict[str, np.ndarray]:
    """Clusters, styles, attributes, hidden vectors, popularity, release times and prices of `n` items.

    Items come in product families (variants of one product, ~`family_size` each): a family shares its
    cluster, style, hidden vector and, up to `variant_spread`, its attributes, while each variant has its own
    popularity and release date. Interactions split over the variants; content shows they are one product."""
    groups = n_clusters * n_styles
    n_families = max(groups, int(round(n / max(family_size, 1.0))))
    cluster_share = rng.dirichlet(np.full(n_clusters, 5.0))
    fam_cluster = rng.choice(n_clusters, size=n_families, p=cluster_share)
    fam_style = rng.integers(n_styles, size=n_families)
    # The first families cover every (cluster, style) group and their first items are on sale from the
    # start, so every preference can always be served.
    fam_cluster[:groups] = np.arange(groups) // n_styles
    fam_style[:groups] = np.arange(groups) % n_styles
    cover = min(n, groups)
    family = np.concatenate([np.arange(cover), rng.integers(n_families, size=n - cover)])
    fam_attributes = rng.random((n_families, len(ATTRIBUTES)))
    attributes = np.clip(fam_attributes[family] + rng.normal(0, variant_spread, (n, len(ATTRIBUTES))), 0, 1)
    fam_collab = rng.normal(size=(n_families, COLLAB_DIM))
    collab = (0.9 * fam_collab[family] + 0.45 * rng.normal(size=(n, COLLAB_DIM))) / np.sqrt(COLLAB_DIM)
    popularity = rng.lognormal(0.0, popularity_sigma, size=n)
    new = rng.random(n) < new_share
    new[:cover] = False
    first_new = T_START + 0.2 * (T_END - T_START)
    release = np.where(new, rng.uniform(first_new, T_END - 14 * DAY, n), T_START - rng.uniform(0, 365 * DAY, n))
    cluster = fam_cluster[family]
    price = np.round(rng.lognormal(3.0, 0.7, n_clusters)[cluster] * rng.lognormal(0.0, 0.25, n_families)[family]
                     * rng.lognormal(0.0, 0.05, n), 2)
    return dict(item_cluster=cluster, item_style=fam_style[family], item_family=family,
                item_attributes=attributes.astype(np.float32), item_collab=collab.astype(np.float32),
                item_popularity=popularity, item_release=release.astype(np.int64), item_price=price,
                cluster_share=cluster_share)


def draw_users(rng: np.random.Generator, n: int, n_clusters: int, n_styles: int, per_user: int,
               attributes_per_user: int, cluster_share: np.ndarray) -> dict[str, np.ndarray]:
    """Preferred clusters (weighted), a style in each, an ideal point over a few attributes, a hidden taste."""
    clusters = rng.choice(n_clusters, size=(n, per_user), p=cluster_share)
    used = np.arange(per_user)[None, :] < rng.integers(1, per_user + 1, size=n)[:, None]
    weights = rng.gamma(1.0, size=(n, per_user)) * used
    weights /= weights.sum(axis=1, keepdims=True)
    styles = rng.integers(n_styles, size=(n, per_user))
    n_attr = len(ATTRIBUTES)
    ideal = rng.random((n, n_attr)).astype(np.float32)
    # Each user cares about `attributes_per_user` attributes, with importances summing to 1.
    cares = np.argsort(rng.random((n, n_attr)), axis=1)[:, :attributes_per_user]
    importance = np.zeros((n, n_attr), np.float32)
    np.put_along_axis(importance, cares, rng.dirichlet(np.full(attributes_per_user, 2.0), n).astype(np.float32), 1)
    collab = (rng.normal(size=(n, COLLAB_DIM)) / np.sqrt(COLLAB_DIM)).astype(np.float32)
    return dict(user_clusters=clusters, user_weights=weights, user_styles=styles, user_ideal=ideal,
                user_importance=importance, user_collab=collab)


def affinity(lat: Latents, prefs: Preferences, users: np.ndarray, items: np.ndarray,
             style: np.ndarray | None) -> np.ndarray:
    """[len(users), len(items)] log-odds of the content, hidden and style parts (popularity not included).

    The attribute part is −strength · Σ_k importance_uk (a_ik − ideal_uk)², expanded into matrix products."""
    w = lat.user_importance[users]
    p = lat.user_ideal[users]
    a = lat.item_attributes[items]
    sq = w @ (a * a).T - 2.0 * (w * p) @ a.T + (w * p * p).sum(axis=1, keepdims=True)
    out = -prefs.attribute_strength * sq
    out += prefs.collab_strength * (lat.user_collab[users] @ lat.item_collab[items].T)
    if style is not None:
        out += prefs.style_strength * (style[:, None] == lat.item_style[items][None, :])
    return out


def draw_interactions(rng: np.random.Generator, lat: Latents, prefs: Preferences, n_users: int,
                      interactions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, timestamp) rows sorted by time: each picks a preferred cluster (or, off preference, any
    cluster and the most popular by chance), then an item already released there, by the choice model."""
    # Heavy-tailed activity with at least MIN_USER_DEGREE rows (before de-duplication).
    extra_mean = max(interactions / n_users - MIN_USER_DEGREE, 0.5)
    degree = MIN_USER_DEGREE + np.floor(rng.lognormal(np.log(extra_mean + 0.5) - 0.5, 1.0, n_users)).astype(np.int64)
    user = np.repeat(np.arange(n_users), degree)
    n = len(user)
    start = rng.uniform(T_START, T_END - 90 * DAY, n_users)
    end = np.minimum(start + np.maximum(rng.exponential(USER_SPAN_DAYS * DAY, n_users), 30 * DAY), T_END)
    ts = (start[user] + rng.random(n) * (end - start)[user]).astype(np.int64)

    cum = np.cumsum(lat.user_weights, axis=1)
    slot = np.minimum((rng.random(n)[:, None] > cum[user]).sum(axis=1), cum.shape[1] - 1)
    cluster = lat.user_clusters[user, slot]
    style = lat.user_styles[user, slot]
    off = rng.random(n) < prefs.off_preference
    cluster[off] = rng.choice(len(lat.cluster_share), size=int(off.sum()), p=lat.cluster_share)
    item = np.empty(n, np.int64)
    for c in np.unique(cluster):
        members = np.flatnonzero(lat.item_cluster == c)
        members = members[np.argsort(lat.item_release[members], kind="stable")]
        rows = np.flatnonzero(cluster == c)
        item[rows] = _choose(rng, lat, prefs, members, user[rows], style[rows], off[rows], ts[rows])
    order = np.argsort(ts, kind="stable")
    return user[order], item[order], ts[order]


def _choose(rng: np.random.Generator, lat: Latents, prefs: Preferences, members: np.ndarray, users: np.ndarray,
            style: np.ndarray, off: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """One item per row among the cluster's `members` (sorted by release) released by then: Gumbel-max over
    the choice model's log-odds; off-preference rows see popularity only."""
    released = np.maximum(np.searchsorted(lat.item_release[members], ts, side="right"), 1)
    log_pop = prefs.popularity_weight * np.log(lat.item_popularity[members])
    out = np.empty(len(users), np.int64)
    step = max(1, SCORE_CELLS // len(members))
    for lo in range(0, len(users), step):
        sl = slice(lo, lo + step)
        score = affinity(lat, prefs, users[sl], members, style[sl]) * ~off[sl, None] + log_pop
        score[np.arange(len(members))[None, :] >= released[sl, None]] = -np.inf
        score -= np.log(-np.log(rng.random(score.shape)))
        out[sl] = members[np.argmax(score, axis=1)]
    return out


def oracle_scores(truth: dict[str, np.ndarray], users: np.ndarray) -> np.ndarray:
    """[len(users), items] the log-probability (up to a per-user constant) of each item under the planted
    choice model, ignoring release times: the best any recommender could rank. `truth` = synth_truth.npz."""
    lat = Latents(**{f.name: truth[f.name] for f in fields(Latents)})
    prefs = Preferences(**{f.name: float(truth[f.name]) for f in fields(Preferences)})
    n_items = len(lat.item_cluster)
    all_items = np.arange(n_items)
    pop = lat.item_popularity ** prefs.popularity_weight
    share = np.bincount(lat.item_cluster, weights=pop, minlength=len(lat.cluster_share))
    # Off preference: a random cluster (by share), then an item by popularity within it.
    prob = prefs.off_preference * (lat.cluster_share[lat.item_cluster] * pop / share[lat.item_cluster])[None, :]
    prob = np.repeat(prob, len(users), axis=0)
    for s in range(lat.user_clusters.shape[1]):
        weight = lat.user_weights[users, s]
        odds = np.exp(affinity(lat, prefs, users, all_items, lat.user_styles[users, s])) * pop
        in_cluster = lat.item_cluster[None, :] == lat.user_clusters[users, s][:, None]
        odds *= in_cluster
        prob += (1 - prefs.off_preference) * weight[:, None] * odds / odds.sum(axis=1, keepdims=True).clip(1e-30)
    return np.log(prob.clip(1e-30))
