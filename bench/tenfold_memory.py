"""What breaks first at 10 × Electronics (~1.9M users × 630k items × 17M interactions): each stage's work for
one epoch, or one batch where an epoch does not fit, in a fresh process; peak RSS and time per part.

    python bench/tenfold_memory.py                                   # every part at 10 × Electronics
    python bench/tenfold_memory.py scale=1 out=/tmp/x1.json          # the same parts at Electronics size
    python bench/tenfold_memory.py parts='[freedom]' eval_users=256  # one part
    python bench/tenfold_memory.py parts='[freedom]' time_cap_s=1800 # a part past 30 min stops, naming its step

Parts: `prepare` (dedupe, 5-core, re-index, split and write the interactions of a raw table with string ids),
`data` (the recsys InteractionData with stage-3-sized item features: what one trial holds and what the
search puts into Ray's object store), `lightgcn` / `freedom` (graph build — FREEDOM's item kNN through FAISS —
then `batches` training batches of 2,048 and one evaluation block of `eval_users` users ranked over every
item; the epoch and full evaluation are extrapolated from them). A recommendation block is the same
computation as an evaluation block. Interactions are the planted-cluster twin of the generator
(`raymmrec.recsys.planted_data`), which builds any size in memory in seconds.
"""
from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from raymmrec.config import load_config  # noqa: E402
from raymmrec.errors import exit_on_user_error  # noqa: E402
from raymmrec.recsys.planted_data import SIZES, planted_interactions  # noqa: E402
from raymmrec.recsys.report import format_table  # noqa: E402

PARTS = ("prepare", "data", "lightgcn", "freedom")


@dataclass
class TenfoldConfig:
    """How many times Electronics, which parts, the feature sizes and how much of an epoch to run."""

    scale: float = 10.0
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    # Stage-3 sizes: a CLIP ViT-B image tower (512) and a MiniLM-sized text vector (384); MMRec's 4096-d
    # VGG image file is 10.3 GB at 630k items by itself (reported, not loaded).
    dims: dict[str, int] = field(default_factory=lambda: {"image": 512, "text": 384})
    batches: int = 3
    eval_users: int = 512
    threads: int = 2
    rss_cap_gb: float = 16.0     # a part above this stops with the step it was in (the finding), not the machine
    time_cap_s: float = 0.0      # likewise for a part that runs longer than this (0: no limit)
    seed: int = 0
    out: str = ""


class RssCap:
    """Stops this process with a RESULT line naming the step when its RSS passes the cap (instead of the OOM killer)
    or, with a time cap, when it has run that long (a build that takes hours is a finding too)."""

    def __init__(self, part: str, cap_gb: float, scale: float, time_cap_s: float = 0.0):
        self.part, self.cap_gb, self.scale, self.step = part, cap_gb, scale, "start"
        self.time_cap_s, self.started = time_cap_s, time.perf_counter()
        threading.Thread(target=self._watch, daemon=True).start()

    def at(self, step: str) -> None:
        self.step = step

    def _watch(self) -> None:
        import psutil

        me = psutil.Process()
        while True:
            rss, s = me.memory_info().rss / 2**30, time.perf_counter() - self.started
            over = (f"over the {self.cap_gb:g} GB cap" if rss > self.cap_gb else
                    f"over the {self.time_cap_s:g} s time cap" if 0 < self.time_cap_s < s else "")
            if over:
                print("RESULT " + json.dumps({"part": self.part, "scale": self.scale, "peak_rss_gb": _peak_gb(),
                                              "s": s, "error": f"{over} during: {self.step}"}), flush=True)
                os._exit(3)
            time.sleep(0.2)


CAP: RssCap | None = None


def _step(name: str) -> None:
    if CAP is not None:
        CAP.at(f"{name} (at {_peak_gb():.1f} GB)")


def _counts(cfg: TenfoldConfig) -> tuple[int, int, int]:
    users, items, inter = SIZES["electronics"]
    return int(users * cfg.scale), int(items * cfg.scale), int(inter * cfg.scale)


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _nbytes(obj: Any) -> int:
    """Bytes of the numpy arrays and sparse matrices inside `obj` (what pickling it ships)."""
    import scipy.sparse as sp

    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if sp.issparse(obj):
        return sum(a.nbytes for a in (obj.data, obj.indices, obj.indptr))
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    return 0


def part_prepare(cfg: TenfoldConfig) -> dict[str, Any]:
    """Raw rows (string ids, 10% extra users below the core) → processed, split and written interactions."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from raymmrec.data.interactions import process_interactions
    from raymmrec.data.write import write_interactions

    nu, ni, nx = _counts(cfg)
    _step("planted interactions")
    p = planted_interactions(n_users=nu, n_items=ni, n_interactions=nx, dims={}, seed=cfg.seed)
    _step("raw table with string ids")
    rng = np.random.default_rng(cfg.seed + 1)
    extra = nu // 10   # users with 1–4 rows: what the 5-core drops in real review dumps
    e_users = np.repeat(np.arange(nu, nu + extra), rng.integers(1, 5, extra))
    users = np.concatenate([p.users, e_users])
    items = np.concatenate([p.items, rng.integers(0, ni, len(e_users))])
    ids = lambda prefix, a: pc.binary_join_element_wise(prefix, pc.cast(pa.array(a), pa.string()), "")  # noqa: E731
    raw = pa.table({"user_id": ids("A", users), "item_id": ids("B", items),
                    "rating": pa.array(np.full(len(users), 5.0, np.float32)),
                    "timestamp": pa.array(rng.integers(1_300_000_000, 1_700_000_000, len(users)))})
    del p, users, items, e_users
    _step("dedupe, 5-core, re-index, split")
    t0 = time.perf_counter()
    processed = process_interactions(raw, kcore=5, split="random", seed=cfg.seed, source="tenfold")
    process_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        _step("write parquet")
        t1 = time.perf_counter()
        write_interactions(tmp, processed)
        write_s = time.perf_counter() - t1
    return {"raw rows": raw.num_rows, "kept": processed.table.num_rows, "users": len(processed.user_ids),
            "items": len(processed.item_ids), "s": process_s + write_s,
            "detail": f"process {process_s:.0f} s, write parquet {write_s:.0f} s"}


def _data(cfg: TenfoldConfig):
    nu, ni, nx = _counts(cfg)
    return planted_interactions(n_users=nu, n_items=ni, n_interactions=nx, dims=dict(cfg.dims),
                                seed=cfg.seed).to_data(f"planted-x{cfg.scale:g}")


def part_data(cfg: TenfoldConfig) -> dict[str, Any]:
    """The InteractionData every trial holds (and the search ships through the object store once)."""
    _step("planted data with features")
    t0 = time.perf_counter()
    data = _data(cfg)
    s = time.perf_counter() - t0
    shipped = _nbytes(vars(data))
    return {"users": data.n_users, "items": data.n_items, "kept": data.n_train + data.valid.nnz + data.test.nnz,
            "s": s, "detail": f"arrays {shipped / 2**30:.2f} GB (features "
                              f"{_nbytes(data.features) / 2**30:.2f} GB) go to the object store"}


def part_backbone(cfg: TenfoldConfig, model_name: str) -> dict[str, Any]:
    """Build, `batches` training batches and one evaluation block: epoch and full evaluation extrapolated."""
    import torch

    from raymmrec.recsys.sampling import BPRSampler
    from raymmrec.recsys.trainer import TrainerConfig, adam_optimizer, build_model, train_epoch

    torch.set_num_threads(cfg.threads)
    _step("planted data with features")
    data = _data(cfg)
    after_data = _peak_gb()
    trainer = TrainerConfig(batch_size=2048)
    params = {"knn_method": "faiss"} if model_name == "freedom" else {}
    _step("build (graphs)")
    t0 = time.perf_counter()
    _, _, model = build_model(model_name, params, trainer, data)
    build_s = time.perf_counter() - t0
    sampler = BPRSampler(data, trainer.batch_size, trainer.seed, model.uses_negatives, model.device)
    _step("training batches")
    model.train()
    model.pre_epoch(1)
    t1 = time.perf_counter()
    loss = train_epoch(model, sampler, adam_optimizer(model.param_groups(trainer.lr), trainer),
                       max_batches=cfg.batches)
    per_batch = (time.perf_counter() - t1) / cfg.batches
    if not math.isfinite(loss):
        raise RuntimeError(f"{model_name}: non-finite loss in the first {cfg.batches} batches")
    _step("evaluation block")
    model.eval()
    with torch.no_grad():
        t2 = time.perf_counter()
        users = torch.arange(min(cfg.eval_users, data.n_users))
        top = torch.topk(model.full_scores(users).float(), 20, dim=1).indices
        block_s = time.perf_counter() - t2
    assert top.shape == (len(users), 20)
    return {"users": data.n_users, "items": data.n_items, "kept": data.n_train, "s": build_s,
            "detail": f"build {build_s:.0f} s; {per_batch:.2f} s/batch → {_duration(per_batch * len(sampler))}/epoch;"
                      f" eval block {block_s:.1f} s → {_duration(block_s * data.n_users / len(users))}/full eval;"
                      f" data alone {after_data:.2f} GB"}


def run_part(name: str, cfg: TenfoldConfig) -> dict[str, Any]:
    """One part in this process, with its peak RSS."""
    global CAP
    CAP = RssCap(name, cfg.rss_cap_gb, cfg.scale, cfg.time_cap_s)
    row = part_prepare(cfg) if name == "prepare" else part_data(cfg) if name == "data" else part_backbone(cfg, name)
    return {"part": name, "scale": cfg.scale, **row, "peak_rss_gb": _peak_gb()}


def table(rows: list[dict[str, Any]]) -> str:
    """The parts as a table a person reads."""
    return format_table([{"part": r["part"], "scale": f"{r['scale']:g}×", "users": f"{r.get('users', 0):,}",
                          "items": f"{r.get('items', 0):,}", "interactions": f"{r.get('kept', 0):,}",
                          "peak RSS GB": f"{r['peak_rss_gb']:.2f}", "s": f"{r['s']:.0f}",
                          "what": r.get("detail", r.get("error", ""))} for r in rows])


@exit_on_user_error
def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        print("RESULT " + json.dumps(run_part(argv[1], TenfoldConfig(**json.loads(argv[2])))), flush=True)
        return
    cfg = load_config(TenfoldConfig, argv)
    unknown = sorted(set(cfg.parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"parts: unknown {unknown} (expected some of {list(PARTS)})")
    rows = []
    for name in cfg.parts:
        print(f"{name} at {cfg.scale:g}× Electronics ...", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--one", name, json.dumps(asdict(cfg))],
                              capture_output=True, text=True)
        found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if found:
            rows.append({"scale": cfg.scale, **json.loads(found[0][len("RESULT "):])})
        else:   # an out-of-memory kill is a finding: keep the row
            last = (proc.stderr.strip().splitlines() or [f"killed by signal {-proc.returncode}"])[-1]
            rows.append({"part": name, "scale": cfg.scale, "peak_rss_gb": float("nan"),
                         "s": time.perf_counter() - t0, "error": f"failed (exit {proc.returncode}): {last}"})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
