"""User-facing errors: one line that names the file, row or key and what was expected."""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

T = TypeVar("T")


class RaymmrecError(Exception):
    """An error caused by the user's input or configuration, shown as one line."""


class ConfigError(RaymmrecError):
    """A config key is unknown, missing or of the wrong type."""


class DataError(RaymmrecError):
    """An input file is missing, malformed or yields no usable data."""


def exit_on_user_error(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a job's main so a RaymmrecError prints `error: ...` and exits 2, without a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except RaymmrecError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
