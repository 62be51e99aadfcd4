"""Writing the interaction side of a dataset dir and its stats.json."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from raymmrec.data.interactions import ProcessedInteractions
from raymmrec.data.schema import (INTERACTIONS_SCHEMA, USERS_SCHEMA, DatasetDir, INTERACTIONS_FILE, STATS_FILE,
                                  USERS_FILE, write_table)
from raymmrec.data.stats import interaction_stats


def write_interactions(root: str | Path, processed: ProcessedInteractions) -> Path:
    """Write interactions.parquet and users.parquet under `root` (created)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_table(processed.table, root / INTERACTIONS_FILE, INTERACTIONS_SCHEMA)
    users = pa.table({
        "user": pa.array(range(len(processed.user_ids)), pa.int32()),
        "user_id": processed.user_ids.cast(pa.string()),
    })
    write_table(users, root / USERS_FILE, USERS_SCHEMA)
    return root


def write_stats(root: str | Path, processed: ProcessedInteractions, source: str, skipped: dict[str, int],
                extra: dict | None = None) -> dict:
    """Compute and write stats.json (counts, splits, cold shares, pipeline counts, skipped rows)."""
    stats = {"source": source}
    stats.update(interaction_stats(processed.table, len(processed.user_ids), len(processed.item_ids)))
    stats["pipeline"] = dict(processed.counts)
    stats["skipped"] = {k: int(v) for k, v in skipped.items()}
    stats.update(extra or {})
    Path(root, STATS_FILE).write_text(json.dumps(stats, indent=2, sort_keys=False))
    DatasetDir.at(root)
    return stats
