"""Amazon review dumps: 2014/2018 (`reviews_*.json(.gz)`, `meta_*.json(.gz)`) and Reviews 2023 (`*.jsonl(.gz)`)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from raymmrec.data.faults import RowFaults
from raymmrec.data.jsonlines import CHUNK_BYTES, LINE, check_file, iter_records, read_columns
from raymmrec.errors import DataError

AmazonFormat = Literal["amazon2018", "amazon2023"]


@dataclass(frozen=True)
class ReviewFields:
    """Field names of one dump's review records."""

    user: str
    item: str
    rating: str
    time: str
    time_per_second: int      # 2023 timestamps are milliseconds


REVIEW_FIELDS: dict[str, ReviewFields] = {
    "amazon2018": ReviewFields("reviewerID", "asin", "overall", "unixReviewTime", 1),
    "amazon2023": ReviewFields("user_id", "parent_asin", "rating", "timestamp", 1000),
}
META_KEY = {"amazon2018": "asin", "amazon2023": "parent_asin"}
META_COLUMNS = ("asin", "title", "brand", "categories", "description", "price", "image")
_PRICE = re.compile(r"\d+(?:[.,]\d+)*")


def read_reviews(path: str | Path, fmt: AmazonFormat,
                 chunk_bytes: int = CHUNK_BYTES) -> tuple[pa.Table, RowFaults]:
    """Stream the review file into raw interactions (RAW_INTERACTIONS_SCHEMA fields, ids dictionary-encoded)."""
    path = check_file(path, "reviews")
    fields = REVIEW_FIELDS[fmt]
    faults = RowFaults("reviews", str(path))
    schema = pa.schema([(fields.user, pa.string()), (fields.item, pa.string()),
                        (fields.rating, pa.float64()), (fields.time, pa.int64())])
    parts = []
    for chunk in read_columns(path, schema, faults, chunk_bytes):
        complete = pc.and_(pc.is_valid(chunk.column(fields.user)), pc.is_valid(chunk.column(fields.item)))
        incomplete = chunk.filter(pc.invert(complete)).column(LINE).to_pylist()
        for row in incomplete:
            faults.add("missing_user_or_item", row)
        chunk = chunk.filter(complete)
        # A rating that is missing, not a number (text, a boolean) or NaN would otherwise enter as a rating.
        rating = chunk.column(fields.rating)
        numeric = pc.fill_null(pc.invert(pc.is_nan(rating)), False)
        for row in chunk.filter(pc.invert(numeric)).column(LINE).to_pylist():
            faults.add("rating_not_a_number", row)
        chunk = chunk.filter(numeric)
        seconds = pc.divide(chunk.column(fields.time), fields.time_per_second) if fields.time_per_second > 1 \
            else chunk.column(fields.time)
        # Ids are dictionary-encoded per chunk and unified at the end: memory holds each distinct id
        # once plus 4 bytes per row, however long the review lines were.
        parts.append(pa.table({
            "user_id": pc.dictionary_encode(chunk.column(fields.user)),
            "item_id": pc.dictionary_encode(chunk.column(fields.item)),
            "rating": pc.cast(chunk.column(fields.rating), pa.float32()),
            "timestamp": pc.cast(seconds, pa.int64()),
        }))
    if not parts or sum(p.num_rows for p in parts) == 0:
        raise DataError(_explain_no_reviews(path, fmt, faults))
    table = pa.concat_tables(parts).unify_dictionaries()
    del parts
    return table.combine_chunks(), faults


def _explain_no_reviews(path: Path, fmt: str, faults: RowFaults) -> str:
    fields = REVIEW_FIELDS[fmt]
    for row, record in iter_records(path, RowFaults("probe", str(path))):
        other = [f for f, rf in REVIEW_FIELDS.items() if f != fmt and rf.user in record and rf.item in record]
        hint = f"; it looks like source={other[0]}" if other else ""
        return (f"reviews file '{path}': no record has the {fmt} fields '{fields.user}' and '{fields.item}' "
                f"(line {row} has fields: {', '.join(sorted(record)[:12])}){hint}")
    if faults.counts.get("malformed"):
        return (f"reviews file '{path}': no line is a JSON object or Python-literal dict "
                f"(first bad line {faults.first_rows['malformed'][0]})")
    return f"reviews file '{path}' has no records"


def read_meta(path: str | Path, fmt: AmazonFormat, asins: pa.Array,
              chunk_bytes: int = CHUNK_BYTES) -> tuple[pa.Table, RowFaults]:
    """Item fields of the wanted asins only; other lines are skipped before they are parsed."""
    path = check_file(path, "meta")
    faults = RowFaults("meta", str(path))
    wanted = set(asins.to_pylist())
    key = META_KEY[fmt]
    # The asin is found without parsing the line, so a huge catalogue costs little beyond reading it.
    key_re = re.compile(rb"(?<![A-Za-z_])['\"]" + key.encode() + rb"['\"]\s*:\s*['\"]([^'\"]+)['\"]")
    rows: dict[str, list[Any]] = {c: [] for c in META_COLUMNS}
    seen: set[str] = set()

    def unwanted(line: bytes) -> bool:
        # Only a line shaped like a whole record is skipped unparsed: a cut or garbled one is parsed, so it
        # is counted as malformed whichever item it names, as a bad review line is.
        body = line.strip()
        if not (body.startswith(b"{") and body.endswith(b"}")):
            return False
        match = key_re.search(line)
        return match is not None and match.group(1).decode("utf-8", "replace") not in wanted

    for row, record in iter_records(path, faults, chunk_bytes, skip=unwanted):
        asin = record.get(key)
        if not isinstance(asin, str):
            faults.add(f"missing_{key}", row)
            continue
        if asin not in wanted or asin in seen:
            continue
        seen.add(asin)
        for column, value in zip(META_COLUMNS, _meta_fields(record, fmt, asin)):
            rows[column].append(value)
    table = pa.table({
        "asin": pa.array(rows["asin"], pa.string()), "title": pa.array(rows["title"], pa.string()),
        "brand": pa.array(rows["brand"], pa.string()),
        "categories": pa.array(rows["categories"], pa.list_(pa.string())),
        "description": pa.array(rows["description"], pa.string()),
        "price": pa.array(rows["price"], pa.float64()), "image": pa.array(rows["image"], pa.string()),
    })
    return table, faults


def _text(value: Any) -> str | None:
    if isinstance(value, list):
        value = " ".join(str(v) for v in value if v)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _price(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        match = _PRICE.search(value)
        if match:
            try:
                return float(match.group(0).replace(",", ""))
            except ValueError:
                return None
    return None


def _categories(record: dict, fmt: str) -> list[str]:
    if fmt == "amazon2023":
        cats = record.get("categories") or []
        cats = [c for c in cats if isinstance(c, str)]
        main = record.get("main_category")
        return cats or ([main] if isinstance(main, str) and main else [])
    cats = record.get("category")
    if cats is None:
        # 2014 dumps: a list of category paths; MMRec uses the first.
        paths = record.get("categories") or []
        cats = paths[0] if paths and isinstance(paths[0], list) else paths
    return [str(c) for c in cats if isinstance(c, str) and c]


def _image(record: dict, fmt: str) -> str | None:
    if fmt == "amazon2023":
        images = record.get("images") or []
        if isinstance(images, dict):   # the Hugging Face export: columns of lists
            images = [dict(zip(images, vals)) for vals in zip(*images.values())]
        for img in images:
            if isinstance(img, dict):
                url = img.get("hi_res") or img.get("large") or img.get("thumb")
                if url:
                    return str(url)
        return None
    for key in ("imageURLHighRes", "imageURL"):
        urls = record.get(key)
        if isinstance(urls, list) and urls:
            return str(urls[0])
    url = record.get("imUrl")
    return str(url) if url else None


def _meta_fields(record: dict, fmt: str, asin: str) -> tuple:
    if fmt == "amazon2023":
        details = record.get("details") if isinstance(record.get("details"), dict) else {}
        brand = record.get("store") or details.get("Brand")
    else:
        brand = record.get("brand")
    return (asin, _text(record.get("title")), _text(brand), _categories(record, fmt),
            _text(record.get("description")), _price(record.get("price")), _image(record, fmt))
