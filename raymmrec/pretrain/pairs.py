"""Image–text pairs as a streaming Ray Dataset: read (dataset dir, JSONL, WebDataset tar), decode, transform,
tokenize and mask in CPU tasks; undecodable or missing images are counted and dropped."""
from __future__ import annotations

import base64
import glob
import io
import json
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from raymmrec.encoders import EncoderConfig
from raymmrec.encoders.base import Preprocess
from raymmrec.errors import DataError
from raymmrec.item_preprocess import decode_image, image_bytes, preprocess_for
from raymmrec.item_text import TEXT_FIELDS, item_text

IGNORE = -100          # MLM label of positions that are not predicted (torch's cross_entropy default)
_WDS_IMAGE_EXT = ("jpg", "jpeg", "png", "webp")


@dataclass
class PairDataConfig:
    """Where pairs come from and how they are prepared."""

    source: str = ""                    # dataset dir, or JSONL / WebDataset .tar files (file, dir or glob)
    format: Literal["auto", "items", "jsonl", "webdataset"] = "auto"
    text_fields: list[str] = field(default_factory=lambda: list(TEXT_FIELDS))
    batch_size: int = 16                # per-worker micro-batch
    preprocess_batch_size: int = 64
    preprocess_cpus: float = 0.5        # CPUs per data task (read, decode, transform)
    augment: bool = True                # open_clip's training augmentation (random resized crop)
    mask_seed: int | None = None        # fixed: the same masks for the same pair every epoch (tests, repro)
    shuffle_buffer: int = 0             # local shuffle buffer of each worker's iterator (0 = off)
    preserve_order: bool = False        # deterministic order and worker split (tests comparing runs)
    # Passes over the source per dataset epoch. Ray Data restarts its pipeline every epoch (seconds), so a small set
    # is read once, kept in the object store, and streamed `repeat` times (fresh masks and augmentation each pass).
    # 0 = auto: enough passes to cover the whole run when the set is small and its size known (a dataset dir).
    repeat: int = 0


@dataclass(frozen=True)
class MaskSpec:
    """MLM / MIM masking done in the data tasks."""

    mlm_ratio: float
    mim_ratio: float


# ---------------------------------------------------------------- reading raw pairs: key, text, image bytes


def detect_format(source: str) -> tuple[str, list[str]]:
    """(format, files) of a source: a dataset dir, or JSONL / .tar shards given as a file, a dir or a glob."""
    p = Path(source)
    if p.is_dir() and (p / "items.parquet").is_file():
        return "items", [str(p / "items.parquet")]
    if p.is_dir():
        files = sorted(str(f) for f in p.iterdir() if f.is_file())
    elif p.is_file():
        files = [str(p)]
    else:
        files = sorted(glob.glob(source))
    tars = [f for f in files if f.endswith(".tar")]
    lines = [f for f in files if f.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz"))]
    if tars:
        return "webdataset", tars
    if lines:
        return "jsonl", lines
    raise DataError(f"pair source '{source}': no items.parquet, .jsonl(.gz) or .tar files found")


def source_rows(source: str) -> int | None:
    """Number of pairs in a dataset dir (from Parquet metadata); None for line / tar sources (unknown unread)."""
    fmt, files = detect_format(source)
    if fmt != "items":
        return None
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def read_raw_pairs(cfg: PairDataConfig):
    """A Ray Dataset of `key`, `text`, `image` (encoded bytes or None), read lazily from `cfg.source`."""
    import ray.data

    fmt, files = detect_format(cfg.source)
    if cfg.format != "auto" and cfg.format != fmt:
        raise DataError(f"pair source '{cfg.source}' looks like {fmt}, but data.format is {cfg.format}")
    fields = list(cfg.text_fields)
    # Every task asks for preprocess_cpus, reads included (Ray's default is a whole CPU): on nodes whose CPUs are
    # partly held by fractional trainers, a whole-CPU task waits forever, e.g. after a lost node moves the trainers.
    cpus = cfg.preprocess_cpus
    if fmt == "items":
        return _row_group_pieces(files).map_batches(
            _row_groups_to_raw, fn_kwargs={"root": str(Path(files[0]).parent), "fields": fields}, batch_size=1,
            batch_format="pyarrow", num_cpus=cpus)
    if fmt == "jsonl":
        ds = ray.data.read_text(files, include_paths=True, num_cpus=cpus)
        return ds.map_batches(_jsonl_to_raw, fn_kwargs={"fields": fields}, batch_format="pyarrow", num_cpus=cpus)
    ds = ray.data.read_webdataset(files, decoder=None, include_paths=False, num_cpus=cpus)
    return ds.map_batches(_wds_to_raw, fn_kwargs={"fields": fields}, batch_format="pyarrow", num_cpus=cpus)


_ITEM_COLUMNS = ["item", "asin", "title", "brand", "categories", "description", "image", "image_bytes"]


def _row_group_pieces(files: list[str]):
    """A dataset of one (file, row group) row per Parquet row group of `files`, listed here on the driver."""
    # not ray.data.read_parquet: it lists the files in a task that always asks for a whole CPU (see read_raw_pairs)
    import pyarrow.parquet as pq
    import ray.data

    pieces = [{"file": f, "row_group": g} for f in files for g in range(pq.ParquetFile(f).num_row_groups)]
    return ray.data.from_items(pieces, override_num_blocks=max(len(pieces), 1))


def _row_groups_to_raw(pieces, root: str, fields: list[str]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for file, group in zip(pieces.column("file").to_pylist(), pieces.column("row_group").to_pylist()):
        for batch in pq.ParquetFile(file).iter_batches(row_groups=[group], columns=_ITEM_COLUMNS, batch_size=1024):
            yield _items_to_raw(pa.Table.from_batches([batch]), root, fields)


def _raw_table(keys: list[str], texts: list[str], images: list[bytes | None]):
    import pyarrow as pa

    return pa.table({"key": pa.array(keys, pa.string()), "text": pa.array(texts, pa.string()),
                     "image": pa.array(images, pa.binary())})


def _items_to_raw(table, root: str, fields: list[str]):
    rows = table.to_pylist()
    images = [r["image_bytes"] or image_bytes(r["image"], Path(root)) for r in rows]
    keys = [str(r["asin"] if r["asin"] is not None else r["item"]) for r in rows]
    return _raw_table(keys, [item_text(r, fields) for r in rows], images)


def _jsonl_to_raw(table, fields: list[str]):
    from raymmrec.data.jsonlines import parse_record

    keys, texts, images = [], [], []
    for line, path in zip(table.column("text").to_pylist(), table.column("path").to_pylist()):
        record = parse_record(line.encode()) if line and line.strip() else None
        if record is None:
            continue
        keys.append(str(record.get("asin") or record.get("parent_asin") or record.get("key") or len(keys)))
        texts.append(record["text"] if isinstance(record.get("text"), str) else item_text(_amazon_fields(record),
                                                                                           fields))
        inline = record.get("image_bytes")
        images.append(base64.b64decode(inline) if isinstance(inline, str) and inline else image_bytes(
            record.get("image") or record.get("imUrl") or record.get("imageURLHighRes") or record.get("imageURL")
            or record.get("images"), Path(path).parent))
    return _raw_table(keys, texts, images)


def _amazon_fields(record: dict) -> dict:
    """Amazon 2014 / 2018 / 2023 metadata keys under the names `item_text` uses."""
    out = dict(record)
    out.setdefault("categories", record.get("category"))
    if out.get("brand") is None:
        details = record.get("details")
        out["brand"] = record.get("store") or (details.get("Brand") if isinstance(details, dict) else None)
    return out


def _wds_to_raw(table, fields: list[str]):
    keys, texts, images = [], [], []
    for sample in table.to_pylist():
        # a field missing from a sample comes back as None or NaN: only bytes / str values count
        keys.append(str(sample.get("__key__")))
        images.append(next((v for e in _WDS_IMAGE_EXT if isinstance(v := sample.get(e), bytes) and v), None))
        text = sample.get("txt")
        meta = sample.get("json")
        if not isinstance(text, (bytes, str)) and isinstance(meta, (bytes, str, dict)):
            meta = json.loads(meta) if isinstance(meta, (bytes, str)) else meta
            text = item_text(_amazon_fields(meta), fields)
        texts.append(text.decode("utf-8", errors="replace") if isinstance(text, bytes)
                     else text if isinstance(text, str) else "")
    return _raw_table(keys, texts, images)


# ---------------------------------------------------------------- decode, transform, tokenize, mask

def encode_pairs(batch: dict[str, np.ndarray], encoder: EncoderConfig, masks: MaskSpec | None, augment: bool,
                 mask_seed: int | None, counter: str | None) -> dict[str, np.ndarray]:
    """Raw pairs → model inputs: `pixels`, `tokens` and, with `masks`, `mlm_tokens`, `mlm_labels`, `image_mask`."""
    import torch

    pp = preprocess_for(encoder)
    transform = pp.train_transform if augment else pp.image_transform
    drops: Counter = Counter()
    pixels, texts, keys = [], [], []
    for key, text, data in zip(batch["key"], batch["text"], batch["image"]):
        image = decode_image(data)
        if image is None:
            drops["missing_images" if not data else "undecodable_images"] += 1
            continue
        pixels.append(transform(image).numpy())
        texts.append(str(text or ""))
        keys.append(str(key))
    if drops and counter:
        _count_drops(counter, dict(drops))
    size = pp.image_size
    out = {"pixels": np.stack(pixels).astype(np.float32) if pixels else np.zeros((0, 3, size, size), np.float32)}
    tokens = pp.tokenizer(texts) if texts else torch.zeros(0, pp.tokenizer.context_length, dtype=torch.long)
    out["tokens"] = tokens.numpy().astype(np.int64)
    if masks is not None:
        n_patches = (size // pp.patch_size) ** 2
        mlm_tokens, mlm_labels, image_mask = mask_batch(tokens, pp, n_patches, masks, keys, mask_seed)
        out.update(mlm_tokens=mlm_tokens, mlm_labels=mlm_labels, image_mask=image_mask)
    return out


def mask_batch(tokens, pp: Preprocess, n_patches: int, masks: MaskSpec, keys: list[str],
               mask_seed: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replace `mlm_ratio` of each text's maskable tokens by the mask id; pick `mim_ratio` of its patches."""
    ids = tokens.numpy().astype(np.int64)
    maskable = pp.tokenizer.maskable(tokens).numpy()
    mlm_tokens, labels = ids.copy(), np.full_like(ids, IGNORE)
    image_mask = np.zeros((len(ids), n_patches), dtype=bool)
    n_mim = int(round(masks.mim_ratio * n_patches))
    shared = np.random.default_rng() if mask_seed is None else None
    for i, key in enumerate(keys):
        rng = shared or np.random.default_rng([mask_seed, zlib.crc32(key.encode())])
        candidates = np.flatnonzero(maskable[i])
        if len(candidates):
            k = max(1, int(round(masks.mlm_ratio * len(candidates))))
            picked = rng.choice(candidates, size=k, replace=False)
            labels[i, picked] = ids[i, picked]
            mlm_tokens[i, picked] = pp.tokenizer.mask_id
        image_mask[i, rng.choice(n_patches, size=n_mim, replace=False)] = True
    return mlm_tokens, labels, image_mask


def _count_drops(counter: str, drops: dict[str, int]) -> None:
    import ray

    try:
        ray.get_actor(counter).add.remote(drops)
    except ValueError:
        pass   # the counter is gone (run finished); counting is best-effort, training is not


def pair_dataset(cfg: PairDataConfig, encoder: EncoderConfig, masks: MaskSpec | None, counter: str | None = None):
    """The full streaming pipeline: raw pairs → model-ready columns, in CPU tasks."""
    ds = read_raw_pairs(cfg)
    if cfg.repeat > 1:
        # union of a materialised dataset only concatenates block references: no re-read, one execution
        once = ds.materialize()
        ds = once.union(*([once] * (cfg.repeat - 1)))
    ds = ds.map_batches(
        encode_pairs, batch_size=cfg.preprocess_batch_size, batch_format="numpy", num_cpus=cfg.preprocess_cpus,
        fn_kwargs={"encoder": encoder, "masks": masks, "augment": cfg.augment, "mask_seed": cfg.mask_seed,
                   "counter": counter},
    )
    # workers print their own progress; Ray Data's bars would interleave with it on every epoch
    ds.context.enable_progress_bars = False
    return ds


def create_drop_counter(name: str):
    """A named actor on the caller's node that sums drop counts reported by data tasks (`.totals.remote()`)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    class DropCounter:
        def __init__(self):
            self.counts: Counter = Counter()

        def add(self, drops: dict[str, int]) -> None:
            self.counts.update(drops)

        def totals(self) -> dict[str, int]:
            return dict(self.counts)

    # on the driver's node: placed on a worker node, it would die with that node and take the run's totals along
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return DropCounter.options(name=name, get_if_exists=True, scheduling_strategy=here).remote()
