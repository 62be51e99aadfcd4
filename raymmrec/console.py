"""A job's console: its own progress lines and summary on the terminal; everything else the process and its Ray
workers print (Ray and Tune logs, Ray Data banners, warnings, worker output) in a log file under the run's folder."""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import IO, Iterator


class Console:
    """`say` a line to the terminal (and the log); `note` a detail to the log, shown as a live status line on a TTY."""

    def __init__(self, terminal: IO[str], log: IO[str] | None = None, live: bool = False) -> None:
        self.terminal, self.log, self.live = terminal, log, live
        self._status = ""
        self._lock = threading.Lock()

    def say(self, line: str) -> None:
        """A line for the person running the job."""
        with self._lock:
            self._clear()
            self.terminal.write(line + "\n")
            self.terminal.flush()
        self._to_log(line)

    def note(self, line: str) -> None:
        """A detail: into the log; on a terminal it replaces the live status line."""
        self._to_log(line)
        self.status(line)

    def status(self, line: str) -> None:
        """Show `line` as the one live status line (a terminal only)."""
        text = " ".join(line.split())
        if not self.live or not text:
            return
        width = shutil.get_terminal_size((100, 20)).columns - 4
        with self._lock:
            self._status = text[:width]
            self.terminal.write("\r\033[K  " + self._status)
            self.terminal.flush()

    def clear(self) -> None:
        """Remove the live status line."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        if self._status:
            self.terminal.write("\r\033[K")
            self._status = ""

    def _to_log(self, line: str) -> None:
        if self.log is not None:
            self.log.write(line + "\n")
            self.log.flush()


@contextlib.contextmanager
def job_console(log_file: str | Path, verbose: bool = False) -> Iterator[Console]:
    """While open, the process's stdout and stderr (file descriptors 1 and 2, so Ray's workers and logs too) go to
    `log_file`; the Console writes to the terminal. `verbose`: nothing is redirected, everything shows."""
    if verbose:
        yield Console(sys.stdout)
        return
    path = Path(log_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    log = open(path, "a", buffering=1)
    console = Console(terminal, log, live=terminal.isatty())
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    streams = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = log        # Python-level writes too, wherever sys.stdout pointed
    stop = threading.Event()
    tail = threading.Thread(target=_follow, args=(path, console, stop), daemon=True) if console.live else None
    if tail is not None:
        tail.start()
    try:
        yield console
    finally:
        stop.set()
        if tail is not None:
            tail.join(timeout=2)
        console.clear()
        log.flush()
        sys.stdout, sys.stderr = streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        log.close()
        terminal.close()


def _follow(path: Path, console: Console, stop: threading.Event) -> None:
    """Show the newest line of the log as the live status (Ray Train steps, Tune trials, Ray Data progress)."""
    with open(path, errors="replace") as f:
        f.seek(0, os.SEEK_END)
        while not stop.wait(0.5):
            lines = [ln for ln in f.read().splitlines() if ln.strip()]
            if lines:
                console.status(lines[-1])
