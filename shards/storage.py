"""Where shards live: a local directory or any fsspec URL (``s3://bucket/prefix``, ``memory://x`` in tests).

Every write goes to a unique temporary name next to its target and is renamed into place once complete, so a
reader never sees a half-written file under a final name, and two writers of the same file (a killed job's
straggler and its resubmission) never write into the same temporary file.
"""

from __future__ import annotations

import uuid

import fsspec
from fsspec import AbstractFileSystem

TMP_SUFFIX = ".tmp"


def location(url: str) -> tuple[AbstractFileSystem, str]:
    """``url`` (a path or fsspec URL) -> (filesystem, path inside it, without a trailing slash)."""
    fs, path = fsspec.core.url_to_fs(str(url))
    return fs, path.rstrip("/") or "/"


def join(root: str, *names: str) -> str:
    return "/".join([root.rstrip("/"), *names])


def temp_path(path: str) -> str:
    """A unique hidden sibling of ``path``; ``is_temp`` recognises it for clean-up."""
    directory, _, name = path.rpartition("/")
    return f"{directory}/.{name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}"


def is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def commit(fs: AbstractFileSystem, tmp: str, path: str) -> None:
    """Move a finished temporary file to its final name (a rename on local disks)."""
    fs.mv(tmp, path)


def write_bytes_atomic(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    tmp = temp_path(path)
    with fs.open(tmp, "wb") as f:
        f.write(data)
    commit(fs, tmp, path)
