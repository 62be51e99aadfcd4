"""Stage-1 throughput: generate + prepare a synthetic size, then read the same data back as Amazon 2018 files.

  python bench/prepare.py                      # electronics size (≈1.7M interactions, 63k items)
  python bench/prepare.py --size baby --keep   # smaller; keep the files under --work

Each step runs in its own process, so its peak RSS is its own. Prints a table.
"""
from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2   # ru_maxrss is KiB on Linux


def _cpu_seconds() -> float:
    """CPU time of this process: steadier than wall time on a machine shared with other jobs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def step_synth(size: str, work: Path) -> dict:
    from raymmrec.data.prepare import PrepareConfig, prepare
    from raymmrec.data.synth import SynthConfig
    from raymmrec.tracking import TrackingConfig

    t0 = time.perf_counter()
    ds = prepare(PrepareConfig(source="synth", synth=SynthConfig(size=size), out=str(work / f"synth-{size}"),
                               progress=False, tracking=TrackingConfig(enabled=False)))
    stats = ds.stats()
    return {"rows": stats["interactions"], "seconds": time.perf_counter() - t0,
            "detail": f"{stats['users']:,} users, {stats['items']:,} items (rendered PNGs + features/raw)"}


def step_write_amazon(size: str, work: Path) -> dict:
    """Amazon 2018 review and meta files (gzip) holding the generated dataset, with review text like the real one."""
    import numpy as np
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    src = work / f"synth-{size}"
    inter = pq.read_table(src / "interactions.parquet")
    users = pq.read_table(src / "users.parquet").column("user_id").to_pylist()
    items = pq.read_table(src / "items.parquet", columns=["asin", "title", "brand", "categories", "description",
                                                          "price"])
    asins = items.column("asin").to_pylist()
    rng = np.random.default_rng(0)
    words = ["great", "product", "works", "as", "expected", "the", "quality", "is", "fine", "would", "buy", "again"]
    reviews = work / "reviews_Bench.json.gz"
    n = 0
    with gzip.open(reviews, "wt", compresslevel=1) as f:
        for batch in inter.to_batches(200_000):
            cols = batch.to_pydict()
            for u, i, r, ts in zip(cols["user"], cols["item"], cols["rating"], cols["timestamp"]):
                text = " ".join(words[k] for k in rng.integers(len(words), size=30))
                f.write(json.dumps({"overall": float(1 + n % 5), "verified": True, "reviewTime": "01 1, 2016",
                                    "reviewerID": users[u], "asin": asins[i], "reviewerName": "A Person",
                                    "reviewText": text, "summary": "Five Stars", "unixReviewTime": ts}) + "\n")
                n += 1
    meta = work / "meta_Bench.json.gz"
    with gzip.open(meta, "wt", compresslevel=1) as f:
        for row in items.to_pylist():
            f.write(json.dumps({"asin": row["asin"], "title": row["title"], "brand": row["brand"] or "",
                                "category": row["categories"], "description": [row["description"] or ""],
                                "price": f"${row['price']:.2f}", "imageURLHighRes": [f"https://img/{row['asin']}.jpg"],
                                "also_buy": asins[:20]}) + "\n")
    return {"rows": n, "seconds": time.perf_counter() - t0,
            "detail": f"reviews {reviews.stat().st_size / 2**20:.0f} MiB gz, meta {meta.stat().st_size / 2**20:.0f} MiB gz"}


def step_amazon(size: str, work: Path) -> dict:
    from raymmrec.data.prepare import PrepareConfig, prepare
    from raymmrec.tracking import TrackingConfig

    reviews, meta = work / "reviews_Bench.json.gz", work / "meta_Bench.json.gz"
    uncompressed = sum(len(line) for line in gzip.open(reviews, "rb"))
    t0 = time.perf_counter()
    ds = prepare(PrepareConfig(source="amazon2018", reviews=str(reviews), meta=str(meta),
                               out=str(work / "amazon-bench"), progress=False, tracking=TrackingConfig(enabled=False)))
    stats = ds.stats()
    return {"rows": stats["pipeline"]["raw_rows"], "seconds": time.perf_counter() - t0,
            "detail": f"{uncompressed / 2**20:.0f} MiB of JSON lines read; {stats['interactions']:,} kept"}


STEPS = {"synth": step_synth, "write_amazon": step_write_amazon, "amazon": step_amazon}
TITLES = {"synth": "generate + prepare synth:{size}", "write_amazon": "write Amazon 2018 files (bench input)",
          "amazon": "prepare amazon2018 (gzip, streamed)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="electronics", choices=["tiny", "small", "baby", "electronics"])
    parser.add_argument("--work", default="/tmp/raymmrec-bench-prepare")
    parser.add_argument("--step", choices=list(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    work = Path(args.work)
    if args.step:
        result = STEPS[args.step](args.size, work)
        result["peak_rss_gb"] = _peak_rss_gb()
        result["cpu_seconds"] = _cpu_seconds()
        print("RESULT " + json.dumps(result))
        return
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in STEPS:
        proc = subprocess.run([sys.executable, __file__, "--size", args.size, "--work", str(work), "--step", name],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"step {name} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
        rows.append((TITLES[name].format(size=args.size), result))
        print(f"done: {rows[-1][0]} in {result['seconds']:.1f} s", flush=True)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"\nstage-1 benchmark, size={args.size}, load average {' '.join(load)} (shared machine)\n")
    print(f"{'step':42s} {'rows':>10s} {'wall s':>7s} {'rows/s':>9s} {'CPU s':>7s} {'peak RSS GB':>11s}  detail")
    for title, r in rows:
        print(f"{title:42s} {r['rows']:>10,d} {r['seconds']:>7.1f} {r['rows'] / r['seconds']:>9,.0f} "
              f"{r['cpu_seconds']:>7.1f} {r['peak_rss_gb']:>11.2f}  {r['detail']}")
    print("\nCPU s is the step process's whole CPU time, imports included; wall s is the timed call.")
    if not args.keep:
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
