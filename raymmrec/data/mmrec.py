"""MMRec dataset folders: import as-is (split kept) and export (`<name>.inter`, feature .npy files, id maps)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from raymmrec.data.faults import RowFaults
from raymmrec.data.interactions import ProcessedInteractions
from raymmrec.data.items import write_items
from raymmrec.data.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, USERS_SCHEMA, DatasetDir, read_table
from raymmrec.data.write import write_interactions, write_stats
from raymmrec.errors import DataError
from raymmrec.feature_sets import MMREC_FEATURE_SUFFIX, mmrec_feature_files

INTER_COLUMNS = ("userID", "itemID", "rating", "timestamp", "x_label")
REQUIRED_COLUMNS = ("userID", "itemID", "x_label")
ITEM_MAP, USER_MAP = "i_id_mapping.csv", "u_id_mapping.csv"
IMPORTED_FEATURES = "mmrec"


def find_inter_file(folder: Path, name: str = "") -> Path:
    """`<folder>/<name>.inter`, or the folder's only `.inter` file when no name is given."""
    if not folder.is_dir():
        raise DataError(f"MMRec folder '{folder}' does not exist")
    if name:
        path = folder / f"{name}.inter"
        if not path.is_file():
            raise DataError(f"MMRec folder '{folder}' has no {name}.inter")
        return path
    found = sorted(folder.glob("*.inter"))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise DataError(f"MMRec folder '{folder}': expected exactly one .inter file, found {listed}; set mmrec_name")
    return found[0]


def read_inter(path: Path) -> tuple[pa.Table, RowFaults]:
    """The `.inter` TSV as INTERACTIONS_SCHEMA; rows with the wrong number of fields are counted and skipped."""
    faults = RowFaults("inter", str(path))
    header = path.open("r", encoding="utf-8").readline().rstrip("\n").split("\t")
    unknown = [c for c in header if c not in INTER_COLUMNS]
    if unknown:
        raise DataError(f"'{path}': unknown column '{unknown[0]}' (expected: {', '.join(INTER_COLUMNS)})")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(f"'{path}': missing column '{missing[0]}' (required: {', '.join(REQUIRED_COLUMNS)})")

    def skip(row: pacsv.InvalidRow) -> str:
        faults.add("wrong_field_count", (row.number or 0))
        return "skip"

    types = {"userID": pa.int64(), "itemID": pa.int64(), "rating": pa.float32(), "timestamp": pa.float64(),
             "x_label": pa.int64()}
    try:
        table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter="\t", invalid_row_handler=skip),
                               convert_options=pacsv.ConvertOptions(column_types=types))
    except pa.ArrowInvalid as exc:
        raise DataError(f"'{path}': {str(exc).splitlines()[0]}") from None
    for column in REQUIRED_COLUMNS:
        if table.column(column).null_count:
            row = pc.index(pc.is_null(table.column(column)), True).as_py() + 2
            raise DataError(f"'{path}' line {row}: empty {column}")
    for column in ("userID", "itemID"):
        if pc.min(table.column(column)).as_py() < 0:
            raise DataError(f"'{path}': negative {column}")
    labels = table.column("x_label")
    bad = pc.invert(pc.is_in(labels, pa.array([0, 1, 2])))
    if pc.any(bad).as_py():
        row = pc.index(bad, True).as_py() + 2
        raise DataError(f"'{path}' line {row}: x_label must be 0, 1 or 2, got {labels[row - 2].as_py()}")
    n = table.num_rows
    out = pa.table({
        "user": pc.cast(table.column("userID"), pa.int32()),
        "item": pc.cast(table.column("itemID"), pa.int32()),
        "rating": table.column("rating") if "rating" in header else pa.array(np.ones(n, np.float32)),
        "timestamp": (pc.cast(pc.floor(pc.fill_null(table.column("timestamp"), 0)), pa.int64())
                      if "timestamp" in header else pa.array(np.zeros(n, np.int64))),
        "split": pc.cast(labels, pa.int8()),
    }, schema=INTERACTIONS_SCHEMA)
    faults.warn()
    return out, faults


def _read_id_map(path: Path, id_column: str, n: int) -> pa.Array:
    """Raw id of each 0..n-1 id from an MMRec mapping TSV (raw id column first), or the ids as text."""
    default = pc.cast(pa.array(np.arange(n)), pa.string())
    if not path.is_file():
        return default
    table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter="\t"),
                           convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    if id_column not in table.column_names or table.num_columns < 2:
        raise DataError(f"'{path}': expected a tab-separated map with columns <raw id> and {id_column}")
    raw_column = next(c for c in table.column_names if c != id_column)
    ids = table.column(id_column).to_numpy()
    if ids.min(initial=0) < 0 or ids.max(initial=-1) >= n:
        raise DataError(f"'{path}': {id_column} outside 0..{n - 1}")
    raw = default.to_pylist()
    for i, r in zip(ids, pc.cast(table.column(raw_column), pa.string()).to_pylist()):
        raw[int(i)] = r
    return pa.array(raw, pa.string())


def import_mmrec(folder: str | Path, out_dir: str | Path, name: str = "") -> tuple[DatasetDir, dict]:
    """An MMRec folder → a dataset dir with its split as-is and its features as features/mmrec."""
    folder = Path(folder)
    inter, faults = read_inter(find_inter_file(folder, name))
    if inter.num_rows == 0:
        raise DataError(f"MMRec folder '{folder}': the .inter file has no interactions")
    # MMRec sizes the id spaces by the largest id over all three splits.
    n_users = int(pc.max(inter.column("user")).as_py()) + 1
    n_items = int(pc.max(inter.column("item")).as_py()) + 1
    features = {}
    for modality, path in mmrec_feature_files(folder).items():
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"'{path}': not a numeric .npy array ({exc})") from None
        if array.ndim != 2 or array.shape[0] != n_items:
            raise DataError(f"'{path}': expected {n_items} rows (max itemID + 1) of features, got shape {array.shape}")
        features[modality] = array.astype(np.float32)
    processed = ProcessedInteractions(
        inter, _read_id_map(folder / USER_MAP, "userID", n_users), _read_id_map(folder / ITEM_MAP, "itemID", n_items),
        {"raw_rows": inter.num_rows + faults.total()})
    root = write_interactions(out_dir, processed)
    items = pa.table({"item": pa.array(np.arange(n_items, dtype=np.int32)), "asin": processed.item_ids})
    write_items(root, [items], raw_features=False)
    out = DatasetDir(root).features(IMPORTED_FEATURES)
    for modality, array in features.items():
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / f"{modality}.npy", array)
    stats = write_stats(root, processed, f"mmrec:{folder}", faults.as_dict(),
                        extra={"feature_sets": [IMPORTED_FEATURES] if features else []})
    return DatasetDir.at(root), stats


def export_mmrec(dataset: str | Path | DatasetDir, out_dir: str | Path, name: str,
                 feature_set: str = "raw") -> Path:
    """Write MMRec's folder format for `dataset`: `<name>.inter`, `<modality>_feat.npy` per modality, id maps."""
    ds = dataset if isinstance(dataset, DatasetDir) else DatasetDir.at(dataset)
    if feature_set not in ds.feature_sets():
        raise DataError(f"dataset dir '{ds.root}' has no feature set '{feature_set}' "
                        f"(available: {', '.join(ds.feature_sets()) or 'none'})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inter = read_table(ds.interactions, INTERACTIONS_SCHEMA)
    _write_tsv(pa.table({
        "userID": inter.column("user"), "itemID": inter.column("item"), "rating": inter.column("rating"),
        "timestamp": inter.column("timestamp"), "x_label": inter.column("split"),
    }), out / f"{name}.inter")
    for modality, path in _set_modalities(ds.features(feature_set)).items():
        np.save(out / f"{modality}{MMREC_FEATURE_SUFFIX}", np.load(path).astype(np.float32))
    items = read_table(ds.items, ITEMS_SCHEMA, columns=["item", "asin"])
    _write_tsv(pa.table({"asin": items.column("asin"), "itemID": items.column("item")}), out / ITEM_MAP)
    if ds.users.is_file():
        users = read_table(ds.users, USERS_SCHEMA, columns=["user", "user_id"])
        _write_tsv(pa.table({"user_id": users.column("user_id"), "userID": users.column("user")}), out / USER_MAP)
    return out


def _set_modalities(folder: Path) -> dict[str, Path]:
    """Modality → file of a feature set: those its manifest lists (side arrays are not modalities), else every .npy."""
    manifest = folder / "manifest.json"
    listed = json.loads(manifest.read_text()).get("modalities") if manifest.is_file() else None
    if isinstance(listed, list) and listed:
        return {str(m): folder / f"{m}.npy" for m in listed if (folder / f"{m}.npy").is_file()}
    return {p.stem: p for p in sorted(folder.glob("*.npy"))}


def _write_tsv(table: pa.Table, path: Path) -> None:
    """Tab-separated with a bare header line, as pandas writes MMRec's files."""
    with open(path, "wb") as f:
        f.write(("\t".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, f, pacsv.WriteOptions(delimiter="\t", quoting_style="none", include_header=False))
