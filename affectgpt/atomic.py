"""The one atomic file write of the package: a reader sees the old file or the complete new one, never a part.

A file is written under a unique hidden temporary name in its own directory (``is_temp`` recognises it, for
clean-up after a killed writer) and renamed over its final name once complete. The fsync policy is explicit
at every call:

- ``durable=True``: the file is fsync'd before the rename and its directory after it, so the new content
  survives an OS crash or power loss. For state that a resumed run trusts without checking it again
  (checkpoint trainer state and ``latest``, pre-labelling parts and results).
- ``durable=False``: atomic against a crashed or killed process only, which costs no disk flush. For outputs
  that are rewritten whenever a run repeats them (predictions, metrics, caches, synthetic videos).

Shards use their own helper (``shards.storage``): they may live on an object store, where a write is
published by fsspec's put/move rather than a local rename, and the ``shards`` package imports nothing from
``affectgpt``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_SUFFIX = ".tmp"


def temp_path(path: Path) -> Path:
    """A unique hidden sibling of ``path``: two writers of one file never share a temporary file."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")


def is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


@contextmanager
def atomic_path(path: str | Path, *, durable: bool) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to (by any means: a file handle, a video
    muxer); on a clean exit it is renamed over ``path``, on an exception deleted."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync(path.parent)


def write_atomic(path: str | Path, data: str | bytes, *, durable: bool) -> None:
    """Write ``data`` (text is UTF-8, written as given: no newline translation) to ``path`` atomically."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
