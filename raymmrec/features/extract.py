"""Stage 3: item features by Ray Data batch inference (CLIP, CLIPER multi-view, BEiT3 unified) and their quality."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pyarrow.parquet as pq

from raymmrec import tracking
from raymmrec.config import flatten, to_dict
from raymmrec.data import schema
from raymmrec.default_dataset import default_dataset_dir
from raymmrec.encoders import EncoderConfig
from raymmrec.encoders.source import EncoderSource, resolve_encoder
from raymmrec.errors import ConfigError
from raymmrec.feature_sets import (TABLE_FILE, VIEWS_DIR, ItemArrays, blocks, publish, staging_dir, write_item_table,
                                   write_manifest)
from raymmrec.features import cliper as cliper_ops
from raymmrec.features.inference import EncodeItems
from raymmrec.features.quality import (QualityConfig, check_quality_config, format_rows, log_quality, quality_report,
                                       quality_rows)
from raymmrec.item_preprocess import (IMAGE_MISSING, IMAGE_OK, IMAGE_STATUS_NAMES, IMAGE_UNDECODABLE, ITEM_COLUMNS,
                                      TextPlan, preprocess_items)
from raymmrec.item_text import BEIT3_TEXT_FIELDS, CLIP_TEXT_FIELDS, FIELD_TEMPLATES, VIEWS
from raymmrec.runtime import RayConfig, init_ray
from raymmrec.tracking import TrackingConfig

Method = Literal["clip", "cliper", "beit3"]


@dataclass
class CliperConfig:
    """CLIPER's views, temperature (Eq. 2) and fusion layer."""

    views: list[str] = field(default_factory=lambda: list(VIEWS))
    tau: float = 0.1
    fusion: Literal["sa", "sum", "concat", "mlp"] = "sa"
    mlp_seed: int = 0


@dataclass
class InferenceConfig:
    """Ray Data batch inference: CPU preprocessing tasks feeding an actor pool (one model load per actor)."""

    batch_size: int = 64              # items per encoder call
    concurrency: int = 2              # actors in the pool
    cpus_per_actor: float = 0.5       # < 1 on small nodes, else the read / preprocess tasks starve (notes P4)
    gpus_per_actor: float = 1.0       # used when GPUs are used
    use_gpu: bool | None = None       # None: when the cluster has GPUs
    preprocess_batch_size: int = 64
    preprocess_cpus: float = 0.5
    torch_threads: int = 0            # intra-op threads per actor; 0 keeps Ray's default
    blocks: int = 0                   # blocks the items are split into; 0: enough for every actor and batch


@dataclass
class FeaturesConfig:
    """One extraction: method, encoder, dataset, output name, inference and quality settings."""

    method: Method = "clip"
    encoder: str = ""                 # stage-2 dir | open_clip '<model>:<tag>' | config / checkpoint file | '' (init)
    init: EncoderConfig = field(default_factory=lambda: EncoderConfig(kind="clip"))
    data: str = ""                    # dataset dir; '' = the generated synthetic set
    name: str = ""                    # the set's name; '' = the method
    output: str = ""                  # the set's folder; '' = <dataset dir>/features/<name> (then usable by name)
    text_fields: list[str] = field(default_factory=lambda: list(CLIP_TEXT_FIELDS))     # clip
    beit3_text_fields: list[str] = field(default_factory=lambda: list(BEIT3_TEXT_FIELDS))
    single_modality: bool = True      # beit3: also image-only / text-only CLS (views/), for mask-modality quality
    cliper: CliperConfig = field(default_factory=CliperConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    seed: int = 0                     # random-init encoders: the same weights in every actor
    synth_size: str = "tiny"
    synth_seed: int = 0
    ray: RayConfig = field(default_factory=RayConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class ExtractResult:
    """What an extraction wrote and measured."""

    name: str
    folder: Path
    manifest: dict[str, Any]
    quality: dict[str, float]
    seconds: float


def dataset_path(cfg: FeaturesConfig, out: Callable[[str], None] = print) -> Path:
    """The configured dataset dir, generating the synthetic set under <tracking.root>/data the first time."""
    if cfg.data:
        return schema.DatasetDir.at(cfg.data).root
    return default_dataset_dir(cfg.tracking.root, cfg.synth_size, cfg.synth_seed, out)


def encoder_for(cfg: FeaturesConfig) -> EncoderSource:
    """Resolve `cfg.encoder`; beit3 with a random / default encoder builds the BEiT3 of `init.beit3`."""
    init = cfg.init
    if cfg.method == "beit3" and cfg.encoder.strip() in ("", "random") and init.kind != "beit3":
        init = copy.deepcopy(init)
        init.kind = "beit3"
    source = resolve_encoder(cfg.encoder, init, cfg.seed)
    if cfg.method == "beit3" and source.config.kind != "beit3":
        raise ConfigError(f"method beit3 needs an encoder with a fused image+text pass; encoder '{cfg.encoder}' "
                          f"is a {source.config.kind} encoder (use method=clip or cliper, or a BEiT3 encoder)")
    return source


def text_plan(cfg: FeaturesConfig) -> TextPlan:
    """The texts of `cfg.method`, after checking the settings that would otherwise fail inside the actors."""
    inf = cfg.inference
    for key in ("batch_size", "concurrency", "preprocess_batch_size"):
        if getattr(inf, key) < 1:
            raise ConfigError(f"inference.{key} must be at least 1, got {getattr(inf, key)}")
    if cfg.method == "cliper":
        unknown = [v for v in cfg.cliper.views if v not in VIEWS]
        if unknown or not cfg.cliper.views:
            raise ConfigError(f"cliper.views: expected a non-empty subset of {', '.join(VIEWS)}, "
                              f"got {cfg.cliper.views}")
        if cfg.cliper.tau <= 0:
            raise ConfigError(f"cliper.tau must be > 0 (the paper uses 0.1), got {cfg.cliper.tau}")
        return TextPlan("cliper", views=tuple(cfg.cliper.views))
    key = "beit3_text_fields" if cfg.method == "beit3" else "text_fields"
    fields = getattr(cfg, key)
    if not fields or any(f not in FIELD_TEMPLATES for f in fields):
        raise ConfigError(f"{key}: expected a non-empty list of {', '.join(FIELD_TEMPLATES)}, got {fields}")
    return TextPlan(cfg.method, fields=tuple(fields))


# Where each actor output column lands: the set's modalities at the top, side arrays under views/.
OUTPUT_FILES = {
    "clip": {"image": "image", "text": "text"},
    "cliper": {"image": "image", "views": f"{VIEWS_DIR}/text_views"},
    "beit3": {"fused": "fused", "image_only": f"{VIEWS_DIR}/image_only", "text_only": f"{VIEWS_DIR}/text_only"},
}
MODALITIES = {"clip": ["text", "image"], "cliper": ["text", "image"], "beit3": ["fused"]}


def preprocess_memory(source: EncoderSource, inf: InferenceConfig) -> int:
    """Bytes a preprocessing task holds: a worker with torch / open_clip loaded (Ray Data measured 0.55–0.6 GiB and
    asked for ~0.7) plus its batch of float pixels twice (the transform outputs and the stacked array)."""
    from raymmrec.encoders import create_preprocess

    size = create_preprocess(source.config).image_size
    return int(2 * inf.preprocess_batch_size * 3 * size * size * 4 + (768 << 20))


def run_inference(items_path: Path, n_items: int, source: EncoderSource, plan: TextPlan, cfg: FeaturesConfig,
                  arrays: ItemArrays, out: Callable[[str], None]) -> dict[str, float]:
    """Stream every item through preprocessing tasks and the encoder actor pool into `arrays`; returns timings."""
    import ray.data

    from raymmrec.runtime import cluster_gpus

    inf = cfg.inference
    use_gpu = cluster_gpus() > 0 if inf.use_gpu is None else inf.use_gpu
    n_blocks = inf.blocks or max(2 * inf.concurrency, math.ceil(n_items / inf.preprocess_batch_size))
    ds = ray.data.read_parquet(str(items_path), columns=ITEM_COLUMNS)
    # small Parquet files come back as one block: split them so every actor gets work (notes P4)
    ds = ds.repartition(min(n_blocks, n_items) or 1)
    # Ray Data fuses a task map into the next actor map when their remote args are equal; the preprocessing tasks'
    # own memory request keeps decoding / tokenizing in CPU tasks that overlap the encoder, not inside the actors.
    ds = ds.map_batches(preprocess_items, batch_size=inf.preprocess_batch_size, batch_format="pyarrow",
                        num_cpus=inf.preprocess_cpus, memory=preprocess_memory(source, inf),
                        fn_kwargs={"encoder": source.config, "plan": plan, "root": str(items_path.parent)})
    ds = ds.map_batches(EncodeItems, batch_size=inf.batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=inf.concurrency),
                        num_cpus=inf.cpus_per_actor, num_gpus=inf.gpus_per_actor if use_gpu else 0,
                        fn_constructor_kwargs={"source": source, "method": plan.method,
                                               "single_modality": cfg.single_modality,
                                               "torch_threads": inf.torch_threads})
    ds.context.enable_progress_bars = False
    t0 = time.perf_counter()
    first, done, next_report = None, 0, 0.0
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        done += arrays.scatter(batch)
        now = time.perf_counter() - t0
        if first is None:
            first = (now, done)
        if now >= next_report or done == n_items:
            out(f"  {done}/{n_items} items encoded ({now:.0f} s)")
            next_report = now + 10.0
    total = time.perf_counter() - t0
    steady = (done - first[1]) / max(total - first[0], 1e-9) if first and done > first[1] else float("nan")
    return {"seconds": round(total, 2), "items_per_s": round(done / max(total, 1e-9), 2),
            "first_batch_s": round(first[0], 2) if first else float("nan"),
            "steady_items_per_s": round(steady, 2), "use_gpu": bool(use_gpu)}


def finish_cliper(arrays: ItemArrays, folder: Path, cc: CliperConfig, block_size: int = 4096) -> np.ndarray:
    """Similarities, view weights and the fused text of every item, block by block; returns the weights."""
    views = arrays.arrays[f"{VIEWS_DIR}/text_views"]
    image = arrays.arrays["image"]
    present = arrays.flags["present"]
    image_ok = arrays.flags["image_status"] == IMAGE_OK
    n, c, d = views.shape
    text = np.lib.format.open_memmap(folder / "text.npy", mode="w+", dtype=np.float32,
                                     shape=(n, cliper_ops.fusion_dim(cc.fusion, c, d)))
    sims = np.zeros((n, c), np.float32)
    weights = np.zeros((n, c), np.float32)
    mlp = cliper_ops.fusion_mlp(c, d, cc.mlp_seed) if cc.fusion == "mlp" else None
    for rows in blocks(n, block_size):
        v = np.asarray(views[rows])
        sims[rows] = np.where(image_ok[rows, None], cliper_ops.view_similarities(v, np.asarray(image[rows])), 0.0)
        weights[rows] = cliper_ops.view_weights(sims[rows], present[rows], cc.tau, image_ok[rows])
        text[rows] = cliper_ops.fuse_views(v, weights[rows], present[rows], cc.fusion, mlp)
    text.flush()
    np.save(folder / VIEWS_DIR / "similarity.npy", sims)
    np.save(folder / VIEWS_DIR / "present.npy", present)
    arrays.arrays["text"] = text
    arrays.flags["view_similarity"] = sims
    arrays.flags["view_weight"] = weights
    return weights


def counts_of(arrays: ItemArrays, method: str, views: list[str]) -> dict[str, int]:
    """Items, image status counts, missing texts (and, for cliper, items per view)."""
    status = arrays.flags["image_status"]
    counts = {"items": int(arrays.n_items), "image_ok": int((status == IMAGE_OK).sum()),
              "image_missing": int((status == IMAGE_MISSING).sum()),
              "image_undecodable": int((status == IMAGE_UNDECODABLE).sum())}
    if method == "cliper":
        present = arrays.flags["present"]
        counts["text_missing"] = int((~present.any(axis=1)).sum())
        counts.update({f"view_{v}": int(present[:, j].sum()) for j, v in enumerate(views)})
    else:
        counts["text_missing"] = int((~arrays.flags["text_ok"]).sum())
    if method == "beit3":
        text_ok = arrays.flags["text_ok"]
        counts["fused_both"] = int(((status == IMAGE_OK) & text_ok).sum())
        counts["fused_empty"] = int(((status != IMAGE_OK) & ~text_ok).sum())
    return counts


def write_outputs(arrays: ItemArrays, folder: Path, items_path: Path, method: str) -> None:
    """The Parquet table keyed by item: flags, then every modality vector."""
    status = arrays.flags["image_status"]
    cols: dict[str, np.ndarray] = {"image_status": np.array([IMAGE_STATUS_NAMES[s] for s in status], object),
                                   "image_ok": status == IMAGE_OK}
    if method == "cliper":
        cols["text_ok"] = arrays.flags["present"].any(axis=1)
        cols.update(view_present=arrays.flags["present"], view_similarity=arrays.flags["view_similarity"],
                    view_weight=arrays.flags["view_weight"])
    else:
        cols["text_ok"] = arrays.flags["text_ok"]
    for modality in MODALITIES[method]:
        cols[modality] = arrays.arrays[modality]
    asins = pq.read_table(items_path, columns=["asin"])["asin"].to_pylist()
    write_item_table(folder / TABLE_FILE, np.arange(arrays.n_items), asins, cols)


def extract_features(cfg: FeaturesConfig, out: Callable[[str], None] = print) -> ExtractResult:
    """Extract `features/<name>` of a dataset dir with `cfg.method`, write the manifest, then report its quality."""
    t0 = time.perf_counter()
    source = encoder_for(cfg)      # config mistakes fail here, before any data is generated or Ray starts
    plan = text_plan(cfg)
    check_quality_config(cfg.quality)
    root = dataset_path(cfg, out)
    ds = schema.DatasetDir.at(root)
    name = cfg.name or cfg.method
    n_items = pq.read_metadata(ds.items).num_rows
    init_ray(cfg.ray)
    params = flatten(to_dict(cfg)) | {"encoder.checkpoint_hash": source.checkpoint_hash}
    with tracking.job_run(cfg.tracking, f"features:{name}", params,
                          tags={"stage": "features", "method": cfg.method, "feature_set": name}):
        out(f"extracting feature set {name} ({cfg.method}) for {n_items} items of {root} with encoder "
            f"{source.describe()['model']} ({source.checkpoint_hash})")
        final = Path(cfg.output) if cfg.output else ds.features(name)
        tmp = staging_dir(final)
        flags = {"image_status": ((), np.int8)}
        flags.update({"present": ((len(plan.views),), bool)} if cfg.method == "cliper" else {"text_ok": ((), bool)})
        arrays = ItemArrays(tmp, n_items, OUTPUT_FILES[cfg.method], flags)
        timing = run_inference(ds.items, n_items, source, plan, cfg, arrays, out)
        arrays.check_complete(str(ds.items))
        if cfg.method == "cliper":
            finish_cliper(arrays, tmp, cfg.cliper)
        arrays.flush()
        write_outputs(arrays, tmp, ds.items, cfg.method)
        counts = counts_of(arrays, cfg.method, list(plan.views))
        manifest = {
            "name": name, "method": cfg.method, "modalities": MODALITIES[cfg.method],
            "dims": {m: int(arrays.arrays[m].shape[1]) for m in MODALITIES[cfg.method]},
            "encoder": source.describe(), "checkpoint_hash": source.checkpoint_hash,
            "counts": counts, "timing": timing, "table": TABLE_FILE,
            "text": {"fields": list(plan.fields)} if plan.fields else {"views": list(plan.views)},
            "side_arrays": sorted(str(p.relative_to(tmp)) for p in (tmp / VIEWS_DIR).glob("*.npy")),
            "dataset": str(root), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        if cfg.method == "cliper":
            manifest["cliper"] = to_dict(cfg.cliper)
        write_manifest(tmp, manifest)
        publish(tmp, final)
        tracking.log_dict(manifest, f"features_{name}_manifest.json")
        tracking.log_metrics({f"features/{k}": v for k, v in counts.items()} | {
            "features/seconds": timing["seconds"], "features/items_per_s": timing["items_per_s"]})
        for kind in ("image_missing", "image_undecodable", "text_missing"):
            if counts[kind]:
                out(f"  {counts[kind]} items with {kind.replace('_', ' ')}: flagged in {TABLE_FILE}, zero rows")
        metrics: dict[str, float] = {}
        if cfg.quality.enabled:
            metrics = quality_report(root, str(final), cfg.quality)
            rows = quality_rows({name: metrics}, cfg.quality.ks)
            log_quality(metrics, rows)
            out(format_rows(rows))
    return ExtractResult(name, final, manifest, metrics, round(time.perf_counter() - t0, 2))
