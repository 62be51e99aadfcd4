"""The search's storage: a local path or an object-store URI (s3://, gs://), reached through pyarrow.fs as Ray does."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def experiment_root(storage: str, name: str) -> str:
    """`<storage>/<name>`, with a local storage path made absolute (Ray Tune requires it)."""
    if "://" in storage:
        return f"{storage.rstrip('/')}/{name}"
    return str(Path(storage).expanduser().resolve() / name)


def _fs(uri: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(uri)


def read_json(uri: str) -> Any | None:
    """The JSON object at `uri`, None when there is no such file."""
    import pyarrow.fs

    fs, path = _fs(uri)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())


def write_json(uri: str, obj: Any) -> None:
    """Write `obj` as JSON at `uri`, creating its parent."""
    fs, path = _fs(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(obj, indent=1, sort_keys=True, default=str).encode())


def remove(uri: str) -> None:
    """Delete the directory at `uri` when it exists (a search started over)."""
    import pyarrow.fs

    fs, path = _fs(uri)
    if fs.get_file_info(path).type == pyarrow.fs.FileType.Directory:
        fs.delete_dir(path)
