"""Dataset statistics (stats.json) and the table a person reads after prepare."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from raymmrec.data.schema import SPLIT_NAMES, TEST, TRAIN, VALID

# An item with at most this many training interactions counts as cold: collaborative signal is thin there.
COLD_MAX_TRAIN = 4


def interaction_stats(table: pa.Table, n_users: int, n_items: int) -> dict:
    """Counts, density, per-split counts and the share of valid/test rows on cold items."""
    item = table.column("item").to_numpy()
    split = table.column("split").to_numpy()
    n = len(item)
    train_per_item = np.bincount(item[split == TRAIN], minlength=n_items)
    out: dict = {
        "users": int(n_users),
        "items": int(n_items),
        "interactions": int(n),
        "density": float(n / max(n_users * n_items, 1)),
        "interactions_per_user": float(n / max(n_users, 1)),
        "interactions_per_item": float(n / max(n_items, 1)),
        "splits": {SPLIT_NAMES[s]: int((split == s).sum()) for s in (TRAIN, VALID, TEST)},
        "items_without_train": int((train_per_item == 0).sum()),
    }
    for s in (VALID, TEST):
        rows = item[split == s]
        name = SPLIT_NAMES[s]
        count = train_per_item[rows]
        out[f"{name}_share_no_train_item"] = float((count == 0).mean()) if len(rows) else 0.0
        out[f"{name}_share_cold_item"] = float((count <= COLD_MAX_TRAIN).mean()) if len(rows) else 0.0
    out["cold_item_max_train"] = COLD_MAX_TRAIN
    return out


def stats_table(stats: dict) -> str:
    """A two-column text table of the headline statistics."""
    rows = [
        ("source", stats.get("source", "")),
        ("users", f"{stats['users']:,}"),
        ("items", f"{stats['items']:,}"),
        ("interactions", f"{stats['interactions']:,}"),
        ("density", f"{stats['density']:.5f}"),
        ("train / valid / test", " / ".join(f"{stats['splits'][k]:,}" for k in ("train", "valid", "test"))),
        (f"test on cold items (<= {stats['cold_item_max_train']} train)", f"{stats['test_share_cold_item']:.1%}"),
        ("test on items with no train", f"{stats['test_share_no_train_item']:.1%}"),
    ]
    for key, value in sorted(stats.get("skipped", {}).items()):
        rows.append((f"skipped {key}", f"{value:,}"))
    if "image_undecodable" in stats:
        rows.append(("images that do not decode", f"{stats['image_undecodable']:,}"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{'statistic'.ljust(width)}  value", f"{'-' * width}  {'-' * 12}"]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)
