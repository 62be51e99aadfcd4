"""Streaming reads of one-record-per-line files (JSON or Python literals, plain or gzip) with counted row faults."""
from __future__ import annotations

import ast
import gzip
import io
import itertools
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.json as pajson

from raymmrec.data.faults import RowFaults
from raymmrec.errors import DataError

CHUNK_LINES = 100_000
LINE = "_line"      # extra column of read_columns: the 1-based line number of each record


def check_file(path: str | Path, what: str) -> Path:
    """The path, or a one-line DataError when it is not a readable file."""
    p = Path(path)
    if not str(path):
        raise DataError(f"no {what} file given")
    if not p.is_file():
        raise DataError(f"{what} file '{p}' does not exist")
    return p


def open_binary(path: Path) -> io.BufferedIOBase:
    """Open a file for reading bytes, decompressing gzip (detected by its magic bytes, not the name)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def iter_line_chunks(path: Path, chunk_lines: int = CHUNK_LINES) -> Iterator[tuple[int, list[bytes]]]:
    """(1-based number of the first line, lines) in chunks, so memory is bounded by the chunk size."""
    row = 1
    with open_binary(path) as f:
        while True:
            try:
                lines = list(itertools.islice(f, chunk_lines))
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise DataError(f"'{path}': cannot read past line {row} ({exc})") from None
            if not lines:
                return
            yield row, lines
            row += len(lines)


def parse_record(line: bytes) -> dict[str, Any] | None:
    """One line as a dict: strict JSON first, then the Python-literal lines of the older Amazon dumps."""
    try:
        record = json.loads(line)
    except ValueError:
        try:
            record = ast.literal_eval(line.decode("utf-8", errors="replace").strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            return None
    return record if isinstance(record, dict) else None


def parse_lines(start: int, lines: list[bytes], faults: RowFaults,
                skip: Callable[[bytes], bool] | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, record) for the non-blank lines not skipped; unparseable ones are counted as malformed."""
    for offset, line in enumerate(lines):
        if not line.strip() or (skip is not None and skip(line)):
            continue
        record = parse_record(line)
        if record is None:
            faults.add("malformed", start + offset)
            continue
        yield start + offset, record


def iter_records(path: Path, faults: RowFaults, chunk_lines: int = CHUNK_LINES,
                 skip: Callable[[bytes], bool] | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, record) for every parseable line of the file that `skip` (a cheap pre-filter) keeps."""
    for start, lines in iter_line_chunks(path, chunk_lines):
        yield from parse_lines(start, lines, faults, skip)


def _chunk_fast(lines: list[bytes], schema: pa.Schema) -> pa.Table | None:
    """The chunk through Arrow's JSON reader, or None when any line is not strict JSON of the right types."""
    try:
        return pajson.read_json(
            io.BytesIO(b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines)),
            read_options=pajson.ReadOptions(block_size=1 << 24),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore",
                                              newlines_in_values=False),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def _chunk_slow(start: int, lines: list[bytes], schema: pa.Schema, faults: RowFaults) -> pa.Table:
    columns: dict[str, list] = {name: [] for name in schema.names}
    rows: list[int] = []
    for row, record in parse_lines(start, lines, faults):
        rows.append(row)
        for name in schema.names:
            columns[name].append(record.get(name))
    arrays = {}
    for f in schema:
        try:
            arrays[f.name] = pa.array(columns[f.name], f.type, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            arrays[f.name] = _lenient_array(columns[f.name], f.type)
    arrays[LINE] = pa.array(rows, pa.int64())
    return pa.table(arrays)


def _lenient_array(values: list, tp: pa.DataType) -> pa.Array:
    """Convert value by value; a value of the wrong type becomes null (the row is then dropped as incomplete)."""
    out = []
    for v in values:
        try:
            out.append(pa.scalar(v, tp).as_py())
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            if isinstance(v, str) and pa.types.is_floating(tp):
                try:
                    out.append(float(v))
                    continue
                except ValueError:
                    pass
            out.append(None)
    return pa.array(out, tp)


def read_columns(path: Path, schema: pa.Schema, faults: RowFaults,
                 chunk_lines: int = CHUNK_LINES) -> Iterator[pa.Table]:
    """The `schema` fields (+ LINE) of every record, chunk by chunk (Arrow's reader, Python for odd chunks)."""
    for start, lines in iter_line_chunks(path, chunk_lines):
        table = _chunk_fast(lines, schema)
        if table is not None:
            rows = [start + i for i, line in enumerate(lines) if line.strip()]
            if len(rows) == table.num_rows:
                yield table.append_column(LINE, pa.array(rows, pa.int64()))
                continue
        yield _chunk_slow(start, lines, schema, faults)
