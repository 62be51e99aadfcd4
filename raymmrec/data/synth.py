"""Seeded synthetic dataset with planted structure, from `tiny` (tests) to `electronics` scale.

Latent item clusters (and styles within them) decide both a rendered PNG and field-structured text;
users prefer a few clusters; item popularity is long-tailed; items are released over time, so late
items reach valid/test with few or no training interactions — there only content can help.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymmrec.data.interactions import SplitMethod, process_interactions
from raymmrec.data.items import write_items
from raymmrec.data.schema import RAW_INTERACTIONS_SCHEMA, SYNTH_TRUTH_FILE, DatasetDir
from raymmrec.data.synth_content import Catalogue, item_text, make_catalogue, render_image
from raymmrec.data.write import write_interactions, write_stats

SizeName = Literal["tiny", "small", "baby", "electronics"]

# Counts before k-core; the generator lands close to them after it (Baby/Electronics as in MMRec's sets).
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"users": 300, "items": 200, "interactions": 3600, "clusters": 8, "styles": 2},
    "small": {"users": 3000, "items": 1200, "interactions": 27000, "clusters": 16, "styles": 3},
    "baby": {"users": 19445, "items": 7050, "interactions": 160792, "clusters": 32, "styles": 4},
    "electronics": {"users": 192403, "items": 63001, "interactions": 1689188, "clusters": 64, "styles": 6},
}
LATENT_DIM = 16
DAY = 86_400
T_START = 1_388_534_400   # 2014-01-01
T_END = 1_538_352_000     # 2018-10-01
MIN_USER_DEGREE = 5
POPULARITY_SIGMA = 1.4
USER_SPAN_DAYS = 240        # mean length of a user's active period
# Drawn counts are scaled so that de-duplication and 5-core land near the preset's counts
# (measured: larger clusters repeat fewer pairs, so Electronics needs less).
OVERDRAW = {"users": 1.08, "items": 1.9, "interactions": 1.2}
OVERDRAW_BY_SIZE = {"electronics": {"users": 1.045, "items": 1.83, "interactions": 1.115}}


@dataclass
class SynthConfig:
    """Size preset plus overridable counts and the strength of the planted signal."""

    size: SizeName = "tiny"
    seed: int = 0
    users: int | None = None
    items: int | None = None
    interactions: int | None = None
    clusters: int | None = None
    styles: int | None = None              # styles per cluster
    clusters_per_user: int = 3             # at most
    off_preference: float = 0.1            # share of interactions outside the user's preferred clusters
    new_item_share: float = 0.4            # items released after the start of the log
    text_noise: float = 0.15
    image_noise: float = 0.15
    image_size: int = 64
    chunk_items: int = 2048                # images rendered and written per chunk

    def counts(self) -> dict[str, int]:
        """Counts to draw: the preset's (or the overrides), scaled up for what filtering removes."""
        base = dict(SIZES[self.size])
        for key in base:
            if getattr(self, key) is not None:
                base[key] = int(getattr(self, key))
        for key, factor in OVERDRAW_BY_SIZE.get(self.size, OVERDRAW).items():
            base[key] = int(round(base[key] * factor))
        return base


@dataclass
class Latents:
    """The planted truth, indexed by the generator's raw item / user index."""

    item_cluster: np.ndarray
    item_style: np.ndarray
    item_latent: np.ndarray
    item_popularity: np.ndarray
    item_release: np.ndarray
    item_price: np.ndarray
    user_clusters: np.ndarray     # [U, clusters_per_user]
    user_weights: np.ndarray      # [U, clusters_per_user], zero for unused slots
    user_styles: np.ndarray       # [U, clusters_per_user]


def _draw_items(rng: np.random.Generator, n: int, n_clusters: int, n_styles: int, new_share: float):
    groups = n_clusters * n_styles
    cluster_share = rng.dirichlet(np.full(n_clusters, 5.0))
    cluster = rng.choice(n_clusters, size=n, p=cluster_share)
    style = rng.integers(n_styles, size=n)
    # The first items cover every (cluster, style) group and are on sale from the start,
    # so every preference can always be served.
    cover = min(n, groups)
    cluster[:cover] = np.arange(cover) // n_styles
    style[:cover] = np.arange(cover) % n_styles
    centers = rng.normal(size=(n_clusters, LATENT_DIM))
    offsets = 0.5 * rng.normal(size=(n_clusters, n_styles, LATENT_DIM))
    latent = centers[cluster] + offsets[cluster, style] + 0.25 * rng.normal(size=(n, LATENT_DIM))
    popularity = rng.lognormal(0.0, POPULARITY_SIGMA, size=n)
    new = rng.random(n) < new_share
    new[:cover] = False
    first_new = T_START + 0.2 * (T_END - T_START)
    release = np.where(new, rng.uniform(first_new, T_END - 14 * DAY, n), T_START - rng.uniform(0, 365 * DAY, n))
    price = np.round(rng.lognormal(3.0, 0.7, n_clusters)[cluster] * rng.lognormal(0.0, 0.25, n), 2)
    return cluster, style, latent.astype(np.float32), popularity, release.astype(np.int64), price, cluster_share


def _draw_users(rng: np.random.Generator, n: int, n_clusters: int, n_styles: int, per_user: int,
                cluster_share: np.ndarray):
    clusters = rng.choice(n_clusters, size=(n, per_user), p=cluster_share)
    used = np.arange(per_user)[None, :] < rng.integers(1, per_user + 1, size=n)[:, None]
    weights = rng.gamma(1.0, size=(n, per_user)) * used
    weights /= weights.sum(axis=1, keepdims=True)
    styles = rng.integers(n_styles, size=(n, per_user))
    return clusters, weights, styles


def _draw_interactions(rng: np.random.Generator, cfg: SynthConfig, counts: dict[str, int], lat: Latents,
                       cluster_share: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_users, n_styles = counts["users"], counts["styles"]
    # Heavy-tailed activity with at least MIN_USER_DEGREE rows (before de-duplication).
    extra_mean = max(counts["interactions"] / n_users - MIN_USER_DEGREE, 0.5)
    degree = MIN_USER_DEGREE + np.floor(rng.lognormal(np.log(extra_mean + 0.5) - 0.5, 1.0, n_users)).astype(np.int64)
    user = np.repeat(np.arange(n_users), degree)
    n = len(user)
    start = rng.uniform(T_START, T_END - 90 * DAY, n_users)
    end = np.minimum(start + np.maximum(rng.exponential(USER_SPAN_DAYS * DAY, n_users), 30 * DAY), T_END)
    ts = (start[user] + rng.random(n) * (end - start)[user]).astype(np.int64)

    cum = np.cumsum(lat.user_weights, axis=1)
    slot = np.minimum((rng.random(n)[:, None] > cum[user]).sum(axis=1), cum.shape[1] - 1)
    cluster = lat.user_clusters[user, slot]
    style = np.where(rng.random(n) < 0.75, lat.user_styles[user, slot], rng.integers(n_styles, size=n))
    off = rng.random(n) < cfg.off_preference
    cluster[off] = rng.choice(len(cluster_share), size=int(off.sum()), p=cluster_share)
    style[off] = rng.integers(n_styles, size=int(off.sum()))
    item = _pick_released_items(rng, lat, cluster * n_styles + style, n_styles, ts)
    order = np.argsort(ts, kind="stable")
    return user[order], item[order], ts[order]


def _pick_released_items(rng: np.random.Generator, lat: Latents, group: np.ndarray, n_styles: int,
                         ts: np.ndarray) -> np.ndarray:
    """For each (group, time), an item of the group already released by then, drawn by popularity."""
    item_group = lat.item_cluster.astype(np.int64) * n_styles + lat.item_style
    span = int(T_END - lat.item_release.min()) + 2
    key = item_group * span + (lat.item_release - lat.item_release.min())
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    cum_pop = np.cumsum(lat.item_popularity[order])
    n_groups = int(item_group.max()) + 1
    group_start = np.searchsorted(sorted_key, np.arange(n_groups) * span, side="left")
    first = group_start[group]
    last = np.searchsorted(sorted_key, group * span + (ts - lat.item_release.min()), side="right") - 1
    last = np.maximum(last, first)     # groups always hold a launch item, this only guards rounding
    base = np.where(first > 0, cum_pop[np.maximum(first - 1, 0)], 0.0)
    target = base + rng.random(len(group)) * (cum_pop[last] - base)
    pos = np.clip(np.searchsorted(cum_pop, target, side="right"), first, last)
    return order[pos]


def _raw_table(user: np.ndarray, item: np.ndarray, ts: np.ndarray) -> pa.Table:
    ids = lambda prefix, x: pc.binary_join_element_wise(prefix, pc.cast(pa.array(x), pa.string()), "")  # noqa: E731
    return pa.table({
        "user_id": ids("u", user), "item_id": ids("i", item),
        "rating": pa.array(np.ones(len(user), np.float32)), "timestamp": pa.array(ts),
    }, schema=RAW_INTERACTIONS_SCHEMA)


def _raw_index(ids: pa.Array) -> np.ndarray:
    return pc.cast(pc.utf8_slice_codeunits(ids, 1), pa.int64()).to_numpy()


def _item_chunks(cfg: SynthConfig, lat: Latents, items: np.ndarray, asins: pa.Array,
                 catalogue: Catalogue) -> Iterator[pa.Table]:
    """Items in new-id order, rendered lazily chunk by chunk (memory stays bounded at Electronics size)."""
    for lo in range(0, len(items), cfg.chunk_items):
        hi = min(lo + cfg.chunk_items, len(items))
        rng = np.random.default_rng([cfg.seed, 1, lo])
        raw = items[lo:hi]
        texts = [item_text(catalogue, lat.item_cluster[r], lat.item_style[r], cfg.text_noise, rng) for r in raw]
        images = [render_image(catalogue, lat.item_cluster[r], lat.item_style[r], cfg.image_noise, rng,
                               cfg.image_size) for r in raw]
        title, brand, categories, description = (list(col) for col in zip(*texts))
        yield pa.table({
            "item": pa.array(np.arange(lo, hi, dtype=np.int32)),
            "asin": asins.slice(lo, hi - lo),
            "title": title, "brand": brand, "categories": categories, "description": description,
            "price": pa.array(lat.item_price[raw]),
            "image": pa.nulls(hi - lo, pa.string()),
            "image_bytes": pa.array(images, pa.binary()),
            "release_ts": pa.array(lat.item_release[raw]),
        })


def generate_dataset(cfg: SynthConfig, out_dir: str | Path, kcore: int = 5, split: SplitMethod = "random",
                     split_seed: int | None = None, progress: bool = False) -> DatasetDir:
    """Generate the dataset dir at `out_dir`: Parquet tables, stats.json, features/raw and synth_truth.npz."""
    t0 = time.perf_counter()
    counts = cfg.counts()
    root = Path(out_dir)
    rng = np.random.default_rng([cfg.seed, 0])
    cluster, style, latent, pop, release, price, cluster_share = _draw_items(
        rng, counts["items"], counts["clusters"], counts["styles"], cfg.new_item_share)
    uclusters, uweights, ustyles = _draw_users(rng, counts["users"], counts["clusters"], counts["styles"],
                                               cfg.clusters_per_user, cluster_share)
    lat = Latents(cluster, style, latent, pop, release, price, uclusters, uweights, ustyles)
    user, item, ts = _draw_interactions(rng, cfg, counts, lat, cluster_share)
    source = f"synth:{cfg.size}"
    split_seed = cfg.seed if split_seed is None else split_seed
    processed = process_interactions(_raw_table(user, item, ts), kcore, split, split_seed, source)
    items = _raw_index(processed.item_ids)
    users = _raw_index(processed.user_ids)

    write_interactions(root, processed)
    catalogue = make_catalogue(counts["clusters"], counts["styles"], _root_category(cfg.size),
                               np.random.default_rng([cfg.seed, 2]))
    report = write_items(root, _item_chunks(cfg, lat, items, processed.item_ids, catalogue), progress=progress,
                         total_chunks=-(-len(items) // cfg.chunk_items))
    np.savez_compressed(
        root / SYNTH_TRUTH_FILE,
        item_cluster=cluster[items], item_style=style[items], item_latent=latent[items],
        item_popularity=pop[items], user_clusters=uclusters[users], user_weights=uweights[users],
        user_styles=ustyles[users])
    write_stats(root, processed, source, skipped={}, extra={
        "kcore": kcore, "split_method": split, "seed": split_seed, "image_undecodable": report.undecodable,
        "synth": {**asdict(cfg), **{f"generated_{k}": v for k, v in counts.items()}},
        "seconds": round(time.perf_counter() - t0, 2),
    })
    return DatasetDir.at(root)


def _root_category(size: str) -> str:
    return {"baby": "Baby", "electronics": "Electronics"}.get(size, "Synth")
