"""Items per second of stage-3 extraction (Ray Data → encoder actor pool), per encoder size and actor count.

    python bench/extract_throughput.py                                   # tiny + ViT-B/32 (random init), 1 and 2 actors
    python bench/extract_throughput.py encoders=[vit-l-14,beit3-base] actors=[1] items.vit-l-14=2048   # a GPU node

Each run extracts CLIP features (image + text; BEiT3: the fused CLS) for the first `items[encoder]` items of a
generated dataset, with random-init weights (no downloads). Reported: end-to-end items/s (actor start included) and
items/s after the first batch arrived (steady state). The load average is printed: on a shared machine the figures
are upper bounds of the time a quiet machine needs.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from raymmrec.config import load_config  # noqa: E402
from raymmrec.data import schema  # noqa: E402
from raymmrec.encoders import Beit3Config, ClipConfig, EncoderConfig  # noqa: E402
from raymmrec.errors import ConfigError, exit_on_user_error  # noqa: E402
from raymmrec.features import FeaturesConfig, InferenceConfig, QualityConfig, extract_features  # noqa: E402
from raymmrec.runtime import RayConfig  # noqa: E402
from raymmrec.tracking import TrackingConfig  # noqa: E402

ENCODERS = {   # name: (method, encoder config)
    "tiny": ("clip", EncoderConfig(kind="clip", clip=ClipConfig(model="raymmrec-tiny-clip"))),
    "vit-b-32": ("clip", EncoderConfig(kind="clip", clip=ClipConfig(model="ViT-B-32"))),
    "vit-l-14": ("clip", EncoderConfig(kind="clip", clip=ClipConfig(model="ViT-L-14"))),
    "beit3-tiny": ("beit3", EncoderConfig(kind="beit3", beit3=Beit3Config(size="tiny"))),
    "beit3-base": ("beit3", EncoderConfig(kind="beit3", beit3=Beit3Config(size="base"))),
}


@dataclass
class ThroughputConfig:
    """Encoders × actor counts, items per encoder, and the generated dataset they read."""

    encoders: list[str] = field(default_factory=lambda: ["tiny", "vit-b-32"])
    actors: list[int] = field(default_factory=lambda: [1, 2])
    items: dict[str, int] = field(default_factory=lambda: {"tiny": 1024, "vit-b-32": 192})
    batch_size: int = 32
    cpus_per_actor: float = 0.5
    synth_size: str = "small"
    work: str = "/tmp/raymmrec-bench-extract"
    out: str = ""                        # JSON of the rows; '' = <work>/extract_throughput.json


def subset_dataset(src: Path, dst: Path, n: int) -> Path:
    """A dataset dir holding the first `n` items of `src` (interactions restricted to them)."""
    if (dst / schema.STATS_FILE).is_file():
        return dst
    dst.mkdir(parents=True, exist_ok=True)
    items = pq.read_table(src / schema.ITEMS_FILE).slice(0, n)
    pq.write_table(items, dst / schema.ITEMS_FILE)
    inter = pq.read_table(src / schema.INTERACTIONS_FILE)
    pq.write_table(inter.filter(pc.less(inter["item"], n)), dst / schema.INTERACTIONS_FILE)
    (dst / schema.STATS_FILE).write_text((src / schema.STATS_FILE).read_text())
    return dst


def run_one(name: str, actors: int, data: Path, cfg: ThroughputConfig) -> dict:
    method, enc = ENCODERS[name]
    fc = FeaturesConfig(method=method, init=enc, data=str(data), name=f"bench-{name}-{actors}",
                        single_modality=False, quality=QualityConfig(enabled=False),
                        inference=InferenceConfig(batch_size=cfg.batch_size, preprocess_batch_size=cfg.batch_size,
                                                  concurrency=actors, cpus_per_actor=cfg.cpus_per_actor),
                        ray=RayConfig(num_cpus=os.cpu_count()), tracking=TrackingConfig(enabled=False))
    load0 = os.getloadavg()[0]
    result = extract_features(fc, out=lambda s: None)
    t = result.manifest["timing"]
    return {"encoder": name, "actors": actors, "items": result.manifest["counts"]["items"],
            "dims": result.manifest["dims"], "wall_s": result.seconds, "pipeline_s": t["seconds"],
            "first_batch_s": t["first_batch_s"], "items_per_s": t["items_per_s"],
            "steady_items_per_s": t["steady_items_per_s"], "gpu": t["use_gpu"],
            "load_avg": round((load0 + os.getloadavg()[0]) / 2, 1)}


@exit_on_user_error
def main(argv: list[str]) -> None:
    cfg = load_config(ThroughputConfig, argv)
    unknown = [e for e in cfg.encoders if e not in ENCODERS]
    if unknown:
        raise ConfigError(f"encoders: unknown {unknown[0]!r} (known: {', '.join(ENCODERS)})")
    work = Path(cfg.work)
    from raymmrec.data.synth import SynthConfig, generate_dataset

    full = work / f"synth-{cfg.synth_size}"
    if not (full / schema.STATS_FILE).is_file():
        generate_dataset(SynthConfig(size=cfg.synth_size, seed=0), full)
    n_full = pq.read_metadata(full / schema.ITEMS_FILE).num_rows
    rows = []
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.1f}")
    print("encoder     actors  items  first batch s  items/s (end to end)  items/s (steady)  load")
    for name in cfg.encoders:
        n = min(cfg.items.get(name, 256), n_full)
        data = subset_dataset(full, work / f"subset-{n}", n)
        for actors in cfg.actors:
            t0 = time.perf_counter()
            row = run_one(name, actors, data, cfg)
            rows.append(row)
            print(f"{name:<11} {actors:>6}  {row['items']:>5}  {row['first_batch_s']:>13.1f}  "
                  f"{row['items_per_s']:>20.1f}  {row['steady_items_per_s']:>16.1f}  {row['load_avg']:>4}"
                  f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    out = Path(cfg.out or work / "extract_throughput.json")
    out.write_text(json.dumps(rows, indent=2))
    print(f"rows written to {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
