"""Training checkpoints: `last.pt` every epoch (resume), `best.pt` at the best validation epoch (hard link)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from raymmrec.errors import ConfigError, DataError

LAST = "last.pt"
BEST = "best.pt"


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(state: dict[str, Any], directory: str | Path, best: bool) -> Path:
    """Write `state` as last.pt (atomically); when `best`, make best.pt the same file."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    last = d / LAST
    _atomic_save(state, last)
    if best:
        tmp = d / (BEST + ".tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(last, tmp)
        except OSError:  # file systems without hard links
            shutil.copyfile(last, tmp)
        os.replace(tmp, d / BEST)
    return last


def update_checkpoint(path: str | Path, **fields: Any) -> None:
    """Add entries to a saved checkpoint (atomically; a hard-linked last.pt keeps its old content)."""
    state = load_checkpoint(path)
    state.update(fields)
    _atomic_save(state, Path(path))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`, with a one-line error when it is not one."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"checkpoint '{p}' does not exist")
    try:
        state = torch.load(p, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated or foreign files fail in many ways inside torch.load
        raise DataError(f"checkpoint '{p}' cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or "model" not in state or "config_hash" not in state:
        raise DataError(f"'{p}' is not a raymmrec training checkpoint")
    return state


def resumable_state(directory: str | Path, config_hash: str, map_location) -> dict[str, Any] | None:
    """The last checkpoint of `directory` when it belongs to the same config; None when there is none."""
    last = Path(directory) / LAST
    if not last.is_file():
        return None
    state = load_checkpoint(last, map_location)
    if state["config_hash"] != config_hash:
        raise ConfigError(f"checkpoint dir '{directory}' holds a run of another config (hash {state['config_hash']}, "
                          f"this one {config_hash}); use another checkpoint dir or resume=false")
    return state
