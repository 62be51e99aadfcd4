"""Fault injection for Ray Train tests: SIGKILL one of this test's own workers once a checkpoint is registered."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil


def checkpoint_registered(root: Path) -> bool:
    """Whether a Ray Train run under `root` has a checkpoint its controller has registered."""
    # a reported checkpoint counts only once the controller has polled every rank: wait for its snapshot file
    for snapshot in root.rglob("checkpoint_manager_snapshot.json"):
        try:
            if json.loads(snapshot.read_text()).get("checkpoint_results"):
                return True
        except (OSError, ValueError):
            continue
    return False


def _kill_once(root: Path, killed: list[int], stop: threading.Event) -> None:
    me = psutil.Process()
    while not stop.is_set():
        if root.exists() and checkpoint_registered(root):
            for proc in me.children(recursive=True):
                try:
                    if "RayTrainWorker" in " ".join(proc.cmdline()):
                        os.kill(proc.pid, signal.SIGKILL)
                        killed.append(proc.pid)
                        return
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
        time.sleep(0.05)


@contextmanager
def kill_a_worker_once_checkpointed(root: Path) -> Iterator[list[int]]:
    """While the block runs, kill one Ray Train worker once a run under `root` has a registered checkpoint."""
    killed: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_kill_once, args=(Path(root), killed, stop), daemon=True)
    watcher.start()
    try:
        yield killed
    finally:
        stop.set()
        watcher.join(timeout=5)
