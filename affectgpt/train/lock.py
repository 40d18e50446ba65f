"""One writer per checkpoint dir: rank 0 holds an exclusive lock on ``<checkpoint.dir>/train.lock`` for the
run's lifetime, and the file names the holder (host, PID, start time) for whoever is refused.

The lock is a POSIX record lock (``fcntl.lockf``): the kernel releases it when the holding process exits, however
it exits (``kill -9`` included), and it is not inherited by forked children (the data loader's workers), so it
never outlives rank 0. Local disks: exact. NFS: POSIX locks go through the NFS lock protocol (NLM for v3, built
into v4), so they hold across clients, but a client that loses its lease (network partition) may lose the lock
without noticing. Lustre: only with the ``flock`` mount option (``localflock`` locks per node only); without it
taking the lock fails and the error says so. ``checkpoint.lock=false`` runs without the lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCK_FILE = "train.lock"


class DirLockedError(RuntimeError):
    """The checkpoint dir belongs to another running job (or this filesystem cannot lock)."""


class CheckpointDirLock:
    """Exclusive, non-blocking; ``acquire`` raises ``DirLockedError`` naming the holder."""

    def __init__(self, root: Path):
        self.path = root / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise _refusal(self.path, e) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_me()).encode() + b"\n")
        self._fd = fd
        log.info("holding %s", self.path)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays, naming the last holder
            self._fd = None


def holder(root: Path) -> dict[str, Any] | None:
    """Who holds ``root``'s lock now (None: nobody, the dir is free). For other processes than the holder:
    POSIX locks belong to a process, and closing any descriptor of the file drops them."""
    path = root / LOCK_FILE
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return _read(path)
    finally:
        os.close(fd)
    return None


def describe(info: dict[str, Any]) -> str:
    """``host X, PID N, since T``."""
    if not info:
        return "a process that has not written its name yet"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"host {info.get('host')}, PID {info.get('pid')}, since {since}"


def _refusal(path: Path, error: OSError) -> DirLockedError:
    if error.errno in (errno.EACCES, errno.EAGAIN):
        return DirLockedError(
            f"{path.parent} is in use by another training job ({describe(_read(path))}); two jobs writing one "
            "checkpoint dir would corrupt each other's checkpoints. Wait for it to end, stop it, or use another "
            "checkpoint.dir"
        )
    return DirLockedError(
        f"cannot lock {path}: {error} (the filesystem may not support POSIX locks; on Lustre mount with "
        "-o flock). Set checkpoint.lock=false to run without the lock, making sure no other job uses this dir"
    )


def _me() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, json.JSONDecodeError):
        return {}

