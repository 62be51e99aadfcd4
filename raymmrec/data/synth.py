"""Seeded synthetic dataset with planted structure, from `tiny` (tests) to `electronics` scale.

Items have a cluster, a style, continuous attributes (colour, size, shade, pattern direction, material, age
range, capacity) rendered with noise into a PNG and field-structured text (some attributes only in one of
them), and a hidden collaborative vector no content shows. Users prefer a few clusters, an ideal point over
a few attributes and a hidden taste; they choose among released items by that and by long-tailed
popularity, sparsely (Baby's ~8 per user, 5-core). Items are released over time, so late items reach
valid/test with few or no training interactions: there, only content can place them.
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
from raymmrec.data.synth_content import (ATTRIBUTE_MODALITY, ATTRIBUTES, Catalogue, item_text, make_catalogue,
                                         render_image)
from raymmrec.data.synth_latents import Latents, Preferences, draw_interactions, draw_items, draw_users
from raymmrec.data.write import write_interactions, write_stats
from raymmrec.errors import ConfigError

SizeName = Literal["tiny", "small", "baby", "electronics"]

# Target counts after 5-core (Baby / Electronics as in MMRec's sets); OVERDRAW scales what is drawn.
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"users": 300, "items": 200, "interactions": 3600, "clusters": 8, "styles": 2},
    "small": {"users": 3000, "items": 1200, "interactions": 27000, "clusters": 16, "styles": 3},
    "baby": {"users": 19445, "items": 7050, "interactions": 160792, "clusters": 32, "styles": 4},
    "electronics": {"users": 192403, "items": 63001, "interactions": 1689188, "clusters": 64, "styles": 6},
}
# Drawn counts are scaled so that de-duplication and 5-core land near the preset's counts (measured).
OVERDRAW = {"users": 1.093, "items": 1.6, "interactions": 1.2}
OVERDRAW_BY_SIZE = {"electronics": {"users": 1.058, "items": 1.54, "interactions": 1.115}}


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
    attributes_per_user: int = 3           # attributes a user has an ideal value for
    attribute_strength: float = 40.0       # log-odds lost per unit of importance-weighted squared distance
    collab_strength: float = 0.3           # weight of the hidden user · item taste (no content shows it)
    style_strength: float = 0.7            # log-odds bonus for the user's style in the cluster
    popularity_weight: float = 1.0         # exponent of item popularity in the choice
    popularity_sigma: float = 1.0          # log-normal spread of item popularity
    off_preference: float = 0.35           # share of interactions outside the user's taste (popularity only)
    family_size: float = 12.0              # mean variants per product family (before 5-core)
    variant_spread: float = 0.02           # attribute spread of the variants around their family's
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
        if min(base.values()) < 1 or base["items"] < base["clusters"] * base["styles"]:
            raise ConfigError(f"synth: counts must be positive and items >= clusters x styles, got {base}")
        if not 1 <= self.attributes_per_user <= len(ATTRIBUTES):
            raise ConfigError(f"synth.attributes_per_user: expected 1..{len(ATTRIBUTES)}, "
                              f"got {self.attributes_per_user}")
        return base

    def preferences(self) -> Preferences:
        """The choice model's strengths."""
        return Preferences(self.attribute_strength, self.collab_strength, self.style_strength,
                           self.popularity_weight, self.off_preference)


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
        texts = [item_text(catalogue, lat.item_cluster[r], lat.item_style[r], lat.item_family[r],
                           lat.item_attributes[r], cfg.text_noise, rng) for r in raw]
        images = [render_image(catalogue, lat.item_cluster[r], lat.item_family[r], lat.item_attributes[r],
                               cfg.image_noise, rng, cfg.image_size) for r in raw]
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
    drawn = draw_items(rng, counts["items"], counts["clusters"], counts["styles"], cfg.new_item_share,
                       cfg.popularity_sigma, cfg.family_size, cfg.variant_spread)
    drawn |= draw_users(rng, counts["users"], counts["clusters"], counts["styles"], cfg.clusters_per_user,
                        cfg.attributes_per_user, drawn["cluster_share"])
    lat = Latents(**drawn)
    prefs = cfg.preferences()
    user, item, ts = draw_interactions(rng, lat, prefs, counts["users"], counts["interactions"])
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
    truth = lat.subset(items, users)
    # item_latent: the item side of the choice model in one vector (cluster, attributes, hidden taste),
    # for checks that need "the truth" as item vectors (an oracle item-kNN).
    truth["item_latent"] = np.concatenate([
        np.eye(counts["clusters"], dtype=np.float32)[truth["item_cluster"]] * 2.0,
        truth["item_attributes"], truth["item_collab"]], axis=1)
    np.savez_compressed(root / SYNTH_TRUTH_FILE, **truth, **asdict(prefs),
                        attribute_names=np.array(ATTRIBUTES), attribute_modality=np.array(ATTRIBUTE_MODALITY))
    write_stats(root, processed, source, skipped={}, extra={
        "kcore": kcore, "split_method": split, "seed": split_seed, "image_undecodable": report.undecodable,
        "synth": {**asdict(cfg), **{f"generated_{k}": v for k, v in counts.items()}},
        "seconds": round(time.perf_counter() - t0, 2),
    })
    return DatasetDir.at(root)


def _root_category(size: str) -> str:
    return {"baby": "Baby", "electronics": "Electronics"}.get(size, "Synth")
