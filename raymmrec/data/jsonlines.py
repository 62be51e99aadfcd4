"""Streaming reads of one-record-per-line files (JSON or Python literals, plain or gzip) with counted row faults."""
from __future__ import annotations

import ast
import gzip
import io
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from raymmrec.data.faults import RowFaults
from raymmrec.errors import DataError

CHUNK_BYTES = 32 << 20
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


def iter_blocks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    """(1-based number of the first line, whole lines) in blocks of about `chunk_bytes`; memory stays bounded."""
    row, rest = 1, b""
    with open_binary(path) as f:
        while True:
            try:
                data = f.read(chunk_bytes)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise DataError(f"'{path}': cannot read past line {row} ({exc})") from None
            if not data:
                if rest.strip():
                    yield row, rest + b"\n"
                return
            data = rest + data
            cut = data.rfind(b"\n")
            if cut < 0:              # a line longer than the block: keep reading
                rest = data
                continue
            block, rest = data[:cut + 1], data[cut + 1:]
            yield row, block
            row += block.count(b"\n")


def iter_line_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, list[bytes]]]:
    """(1-based number of the first line, lines) per block."""
    for row, block in iter_blocks(path, chunk_bytes):
        yield row, block.split(b"\n")[:-1]


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


def iter_records(path: Path, faults: RowFaults, chunk_bytes: int = CHUNK_BYTES,
                 skip: Callable[[bytes], bool] | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, record) for every parseable line of the file that `skip` (a cheap pre-filter) keeps."""
    for start, lines in iter_line_chunks(path, chunk_bytes):
        yield from parse_lines(start, lines, faults, skip)


def _block_fast(block: bytes, schema: pa.Schema) -> pa.Table | None:
    """The block through Arrow's JSON reader, or None when any line is not strict JSON of the right types."""
    try:
        return pajson.read_json(
            io.BytesIO(block),
            read_options=pajson.ReadOptions(block_size=max(1 << 20, min(len(block) + 1, 1 << 26))),
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
        if pa.types.is_floating(f.type) or pa.types.is_integer(f.type):
            # Python would read True as 1: a boolean is not a number here (the row is then counted by the reader).
            columns[f.name] = [None if isinstance(v, bool) else v for v in columns[f.name]]
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
                 chunk_bytes: int = CHUNK_BYTES) -> Iterator[pa.Table]:
    """The `schema` fields (+ LINE) of every record, block by block (Arrow's reader, Python for odd blocks)."""
    for start, block in iter_blocks(path, chunk_bytes):
        table = _block_fast(block, schema)
        if table is not None:
            n_lines = block.count(b"\n")
            if table.num_rows == n_lines:
                rows = np.arange(start, start + n_lines, dtype=np.int64)
            else:                    # Arrow skipped blank lines: number the others
                rows = np.array([start + i for i, line in enumerate(block.split(b"\n")[:-1]) if line.strip()])
            yield table.append_column(LINE, pa.array(rows, pa.int64()))
            continue
        yield _chunk_slow(start, block.split(b"\n")[:-1], schema, faults)
