"""Stage 1 entry: a source (generator, Amazon dumps, MMRec folder) → the dataset dir, tracked in MLflow."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymmrec import tracking
from raymmrec.config import flatten, to_dict
from raymmrec.data.amazon import read_meta, read_reviews
from raymmrec.data.interactions import ProcessedInteractions, SplitMethod, process_interactions
from raymmrec.data.items import local_image_paths, write_items
from raymmrec.data.jsonlines import CHUNK_BYTES
from raymmrec.data.mmrec import export_mmrec, import_mmrec
from raymmrec.data.schema import DatasetDir
from raymmrec.data.synth import SynthConfig, generate_dataset
from raymmrec.data.write import write_interactions, write_stats
from raymmrec.errors import ConfigError

log = logging.getLogger(__name__)

Source = Literal["synth", "amazon2018", "amazon2023", "mmrec"]
ITEM_CHUNK = 4096


@dataclass
class PrepareConfig:
    """Where the data comes from, how it is filtered and split, and where the dataset dir goes."""

    source: Source = "synth"
    reviews: str = ""                 # Amazon review file (.json / .jsonl, optionally .gz)
    meta: str = ""                    # Amazon metadata file; empty = items keep only their asin
    images: str = ""                  # optional folder of downloaded images named <asin>.<ext>
    folder: str = ""                  # MMRec dataset folder (source=mmrec)
    mmrec_name: str = ""              # <name>.inter in that folder; empty = its only .inter file
    out: str = ""                     # dataset dir; empty = data/<name derived from the source>
    kcore: int = 5
    split: SplitMethod = "random"
    seed: int = 0                     # split seed
    chunk_bytes: int = CHUNK_BYTES    # bytes per streamed block of the raw files (whole lines)
    synth: SynthConfig = field(default_factory=SynthConfig)
    export_mmrec: str = ""            # also write MMRec's folder format here
    export_name: str = ""             # <name>.inter of the export; empty = the dataset dir's name
    export_features: str = "raw"      # feature set exported as image_feat.npy / text_feat.npy
    progress: bool = True
    tracking: tracking.TrackingConfig = field(default_factory=tracking.TrackingConfig)

    def out_dir(self) -> Path:
        """The dataset dir this config writes."""
        if self.out:
            return Path(self.out)
        if self.source == "synth":
            return Path("data") / f"synth-{self.synth.size}-{self.synth.seed}"
        if self.source == "mmrec":
            return Path("data") / Path(self.folder).name
        stem = Path(self.reviews).name.split(".")[0] or "amazon"
        return Path("data") / f"{self.source}-{stem}"


def prepare(cfg: PrepareConfig) -> DatasetDir:
    """Build the dataset dir of `cfg`, log params, statistics and skipped rows to MLflow; return it."""
    _check(cfg)
    out = cfg.out_dir()
    params = {k: v for k, v in flatten(to_dict(cfg)).items() if not k.startswith("tracking.")}
    with tracking.job_run(cfg.tracking, "prepare", params=params, tags={"stage": "prepare"}):
        t0 = time.perf_counter()
        if cfg.source == "synth":
            ds = generate_dataset(cfg.synth, out, kcore=cfg.kcore, split=cfg.split, split_seed=cfg.seed,
                                  progress=cfg.progress)
        elif cfg.source == "mmrec":
            ds, _ = import_mmrec(cfg.folder, out, cfg.mmrec_name)
        else:
            ds = _prepare_amazon(cfg, out)
        stats = ds.stats()
        if cfg.tracking.enabled:
            metrics = {k: v for k, v in flatten(stats).items() if not k.startswith("synth.")}
            metrics["prepare_seconds"] = time.perf_counter() - t0
            tracking.log_metrics(metrics)
            tracking.log_dict(stats, "stats.json")
        if cfg.export_mmrec:
            name = cfg.export_name or ds.root.name
            folder = export_mmrec(ds, cfg.export_mmrec, name, cfg.export_features)
            if cfg.tracking.enabled:
                tracking.log_params({"export_mmrec.folder": str(folder)})
            log.info("exported MMRec folder %s (%s.inter)", folder, name)
    return ds


def _check(cfg: PrepareConfig) -> None:
    if cfg.kcore < 1:
        raise ConfigError(f"config key 'kcore': expected an integer >= 1, got {cfg.kcore}")
    if cfg.source in ("amazon2018", "amazon2023") and not cfg.reviews:
        raise ConfigError(f"source={cfg.source} needs reviews=<review file> (and usually meta=<metadata file>)")
    if cfg.source == "mmrec" and not cfg.folder:
        raise ConfigError("source=mmrec needs folder=<MMRec dataset folder>")
    if cfg.chunk_bytes < 1:
        raise ConfigError(f"config key 'chunk_bytes': expected an integer >= 1, got {cfg.chunk_bytes}")


def _prepare_amazon(cfg: PrepareConfig, out: Path) -> DatasetDir:
    raw, review_faults = read_reviews(cfg.reviews, cfg.source, cfg.chunk_bytes)
    review_faults.warn()
    processed = process_interactions(raw, cfg.kcore, cfg.split, cfg.seed, source=f"reviews file '{cfg.reviews}'")
    del raw
    write_interactions(out, processed)
    skipped = review_faults.as_dict()
    meta = None
    if cfg.meta:
        meta, meta_faults = read_meta(cfg.meta, cfg.source, processed.item_ids, cfg.chunk_bytes)
        meta_faults.warn()
        skipped.update(meta_faults.as_dict())
    else:
        log.warning("no meta file given: items keep only their asin (no title, brand, categories, image)")
    items = _items_table(processed, meta, cfg.images)
    missing_meta = len(processed.item_ids) - (0 if meta is None else meta.num_rows)
    if cfg.meta and missing_meta:
        log.warning("%s: %d of %d items have no metadata line", cfg.meta, missing_meta, len(processed.item_ids))
    report = write_items(out, _slices(items), raw_features=True, progress=cfg.progress,
                         total_chunks=-(-items.num_rows // ITEM_CHUNK))
    skipped.update(report.faults.as_dict())
    write_stats(out, processed, f"{cfg.source}:{cfg.reviews}", skipped, extra={
        "kcore": cfg.kcore, "split_method": cfg.split, "seed": cfg.seed,
        "items_without_meta": int(missing_meta), "images_checked": report.images_checked,
        "image_undecodable": report.undecodable, "raw_feature_modalities": report.raw_modalities,
    })
    return DatasetDir.at(out)


def _items_table(processed: ProcessedInteractions, meta: pa.Table | None, images: str) -> pa.Table:
    """Item rows in new-id order: metadata joined by asin, release_ts = the item's first interaction."""
    asins = processed.item_ids.cast(pa.string())
    n = len(asins)
    inter = processed.table
    first_seen = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_seen, inter.column("item").to_numpy(), inter.column("timestamp").to_numpy())
    columns = {"item": pa.array(np.arange(n, dtype=np.int32)), "asin": asins, "release_ts": pa.array(first_seen)}
    if meta is not None and meta.num_rows:
        rows = pc.index_in(asins, value_set=meta.column("asin"))
        for name in ("title", "brand", "categories", "description", "price", "image"):
            columns[name] = meta.column(name).take(rows)
    table = pa.table(columns)
    if images:
        local = local_image_paths(asins.to_pylist(), images)
        found = pa.array(local, pa.string())
        if "image" in table.column_names:
            found = pc.coalesce(found, table.column("image"))
            table = table.drop_columns(["image"])
        table = table.append_column("image", found)
    return table


def _slices(table: pa.Table) -> Iterator[pa.Table]:
    for lo in range(0, table.num_rows, ITEM_CHUNK):
        yield table.slice(lo, ITEM_CHUNK)
