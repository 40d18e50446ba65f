"""Write one shard: a WebDataset tar built under a temporary name and renamed when complete.

The tar is reproducible: members carry fixed metadata (mtime 0, uid/gid 0, mode 0444), so the same samples
always give the same bytes and the same sha256. That is what lets a resubmitted pack job prove that a kept
shard is the one it would have written.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO

from shards import storage


@dataclass(frozen=True)
class ShardInfo:
    file: str  # name inside the shard directory
    samples: int
    bytes: int
    sha256: str


class _HashingWriter(io.RawIOBase):
    """Counts and hashes the bytes on their way to ``target`` so the shard is never read back for its hash."""

    def __init__(self, target: BinaryIO):
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)


class ShardWriter:
    """``with ShardWriter(directory_url, "coarse-000000.tar") as w: w.add(key, members)``; then ``w.info``.

    Leaving the block with an exception deletes the temporary file; nothing appears under the final name.
    """

    def __init__(self, directory: str, file: str):
        self.fs, root = storage.location(directory)
        self.fs.makedirs(root, exist_ok=True)
        self.file = file
        self.path = storage.join(root, file)
        self.tmp = storage.temp_path(self.path)
        self.samples = 0
        self.info: ShardInfo | None = None

    def __enter__(self) -> ShardWriter:
        self._raw = self.fs.open(self.tmp, "wb")
        self._hashing = _HashingWriter(self._raw)
        self._tar = tarfile.open(fileobj=self._hashing, mode="w|", format=tarfile.PAX_FORMAT)
        return self

    def add(self, key: str, members: dict[str, bytes]) -> None:
        """Append one sample: ``members`` maps suffix (``json``, ``frames.jpg``) to content."""
        for suffix in sorted(members):
            data = members[suffix]
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size, info.mtime, info.mode = len(data), 0, 0o444
            self._tar.addfile(info, io.BytesIO(data))
        self.samples += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._tar.close()
        finally:
            self._raw.close()
        if exc_type is not None:
            self.fs.rm(self.tmp)
            return
        storage.commit(self.fs, self.tmp, self.path)
        self.info = ShardInfo(self.file, self.samples, self._hashing.size, self._hashing.sha256.hexdigest())
