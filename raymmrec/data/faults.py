"""Per-row faults of an input: counted, warned about with the first row numbers, and skipped."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_SHOW_ROWS = 5


@dataclass
class RowFaults:
    """Per-row problems of one input file: counts by reason and the first few row numbers (1-based lines)."""

    label: str                      # e.g. "reviews" (the key prefix in stats / MLflow)
    path: str
    counts: Counter = field(default_factory=Counter)
    first_rows: dict[str, list[int]] = field(default_factory=dict)

    def add(self, reason: str, row: int, n: int = 1) -> None:
        self.counts[reason] += n
        rows = self.first_rows.setdefault(reason, [])
        if len(rows) < _SHOW_ROWS:
            rows.append(row)

    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        """`<label>.<reason>` → count, for stats.json and MLflow."""
        return {f"{self.label}.{reason}": n for reason, n in sorted(self.counts.items())}

    def warn(self) -> None:
        """One warning line per reason, naming the file and the first rows."""
        for reason, n in sorted(self.counts.items()):
            rows = ", ".join(str(r) for r in self.first_rows.get(reason, []))
            more = ", ..." if n > len(self.first_rows.get(reason, [])) else ""
            log.warning("%s: skipped %d row(s): %s (rows %s%s)", self.path, n, reason.replace("_", " "), rows, more)
