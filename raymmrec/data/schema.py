"""Arrow schemas and file layout of the dataset dir, declared once."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from raymmrec.errors import DataError

# x_label values, as in MMRec's `.inter` files.
TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VALID: "valid", TEST: "test"}

INTERACTIONS_SCHEMA = pa.schema([
    pa.field("user", pa.int32(), nullable=False),        # 0-based contiguous
    pa.field("item", pa.int32(), nullable=False),        # 0-based contiguous
    pa.field("rating", pa.float32()),
    pa.field("timestamp", pa.int64()),                   # unix seconds
    pa.field("split", pa.int8(), nullable=False),        # TRAIN / VALID / TEST
])

ITEMS_SCHEMA = pa.schema([
    pa.field("item", pa.int32(), nullable=False),        # row r is item r
    pa.field("asin", pa.string()),                       # raw item id
    pa.field("title", pa.string()),
    pa.field("brand", pa.string()),
    pa.field("categories", pa.list_(pa.string())),
    pa.field("description", pa.string()),
    pa.field("price", pa.float64()),
    pa.field("image", pa.string()),                      # local path (relative to the dir), absolute path or URL
    pa.field("image_bytes", pa.binary()),                # inline encoded image, preferred when present
    pa.field("release_ts", pa.int64()),                  # first time the item could be seen (unix seconds)
    pa.field("image_ok", pa.bool_()),                    # image decoded; false = undecodable, null = not checked (URL)
])

USERS_SCHEMA = pa.schema([
    pa.field("user", pa.int32(), nullable=False),
    pa.field("user_id", pa.string()),                    # raw user id
])

# In-memory contract between the readers and the interaction pipeline (raw ids, before k-core);
# the id columns may also be dictionary<int32, string> (streaming readers encode chunk by chunk).
RAW_INTERACTIONS_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("rating", pa.float32()),
    pa.field("timestamp", pa.int64()),
])

INTERACTIONS_FILE = "interactions.parquet"
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
STATS_FILE = "stats.json"
FEATURES_DIR = "features"
RAW_FEATURES = "raw"                                     # features/raw: cheap fixed extractors over the item content
SYNTH_TRUTH_FILE = "synth_truth.npz"                     # generator ground truth, rows in item / user order


@dataclass(frozen=True)
class DatasetDir:
    """Paths of one dataset dir."""

    root: Path

    @classmethod
    def at(cls, path: str | Path) -> "DatasetDir":
        """Open an existing dataset dir, with a one-line error when it is not one."""
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"dataset dir '{root}' does not exist")
        for name in (INTERACTIONS_FILE, ITEMS_FILE):
            if not (root / name).is_file():
                raise DataError(f"dataset dir '{root}' has no {name} (not a prepared dataset dir?)")
        return cls(root)

    @property
    def interactions(self) -> Path:
        return self.root / INTERACTIONS_FILE

    @property
    def items(self) -> Path:
        return self.root / ITEMS_FILE

    @property
    def users(self) -> Path:
        return self.root / USERS_FILE

    @property
    def stats_path(self) -> Path:
        return self.root / STATS_FILE

    def features(self, name: str) -> Path:
        """Folder of the feature set `name`: one `<modality>.npy` per modality, rows in item order."""
        return self.root / FEATURES_DIR / name     # the same place raymmrec.feature_sets.feature_set_folder names

    def feature_sets(self) -> list[str]:
        """Names of the feature sets present."""
        base = self.root / FEATURES_DIR
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and any(p.glob("*.npy")))

    def stats(self) -> dict:
        """The dataset's statistics (stats.json)."""
        if not self.stats_path.is_file():
            raise DataError(f"dataset dir '{self.root}' has no {STATS_FILE}")
        return json.loads(self.stats_path.read_text())


def check_schema(table: pa.Table, schema: pa.Schema, source: str) -> pa.Table:
    """Cast `table` to `schema` (columns in order), naming the first unknown or missing column."""
    names = set(table.column_names)
    for field in schema:
        if field.name not in names:
            if field.nullable:
                table = table.append_column(field.name, pa.nulls(len(table), field.type))
            else:
                raise DataError(f"{source}: missing required column '{field.name}' ({field.type})")
    extra = sorted(names - set(schema.names))
    if extra:
        raise DataError(f"{source}: unknown column '{extra[0]}' (expected: {', '.join(schema.names)})")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"{source}: columns do not match the declared schema ({exc})") from None


def write_table(table: pa.Table, path: Path, schema: pa.Schema) -> None:
    """Write `table` as Parquet under the declared schema."""
    pq.write_table(check_schema(table, schema, str(path)), path, compression="zstd")


class TableWriter:
    """Chunked Parquet writer under a declared schema (for tables too large to hold at once)."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = Path(path)
        self.schema = schema
        self._writer = pq.ParquetWriter(self.path, schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(check_schema(table, self.schema, str(self.path)))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_table(path: Path, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """Read a dataset-dir Parquet file, checked against its schema."""
    if not path.is_file():
        raise DataError(f"'{path}' does not exist")
    table = pq.read_table(path, columns=columns)
    if columns is None:
        table = check_schema(table, schema, str(path))
    return table
