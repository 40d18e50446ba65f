"""Re-check a shard directory against its index: every shard present, with the recorded size, sha256 and
sample count, and every sample holding exactly the members the schema defines, each matching the digest the
pack job wrote (``shards.schema.check_sample``, the check the loader makes).

Each shard is read once: the bytes are hashed on their way through the tar parser.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from webdataset.tariterators import base_plus_ext

from shards import storage
from shards.index import Index, read_index
from shards.schema import SchemaError, check_sample
from shards.writer import ShardInfo


class _HashingReader(io.RawIOBase):
    def __init__(self, source: BinaryIO):
        self.source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.source.read(len(buffer))
        self.sha256.update(data)
        self.size += len(data)
        buffer[: len(data)] = data
        return len(data)


def verify(directory: str, progress: Callable[[ShardInfo], None] | None = None,
           workers: int = 1) -> tuple[Index, list[str]]:
    """Return the index and a list of problems, each naming its shard (in index order); an empty list means all
    is well. ``workers`` threads check shards side by side: reading waits on storage (an object store most of
    all) and sha256 runs outside the GIL, so threads pay wherever reading or hashing is the cost.

    Raises ShardIndexError when the index itself is missing or malformed.
    """
    index = read_index(directory)
    fs, root = storage.location(directory)

    def check(shard: ShardInfo) -> list[str]:
        return _check_shard(fs, storage.join(root, shard.file), shard)

    problems = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for shard, found in zip(index.shards, pool.map(check, index.shards), strict=True):
            problems += found
            if progress:
                progress(shard)
    return index, problems


def _check_shard(fs, path: str, shard: ShardInfo) -> list[str]:
    if not fs.exists(path):
        return [f"{shard.file}: missing"]
    problems, damaged = [], []
    samples = 0
    key, members = None, {}

    def check() -> None:
        try:
            check_sample(members, f"{shard.file}:{key}")
        except SchemaError as e:
            damaged.append(str(e))

    with fs.open(path, "rb") as f:
        reader = _HashingReader(f)
        try:
            with tarfile.open(fileobj=io.BufferedReader(reader), mode="r|") as tar:
                for member in tar:
                    name, suffix = base_plus_ext(member.name)
                    if name != key:
                        if key is not None:
                            check()
                        key, members, samples = name, {}, samples + 1
                    members[suffix] = tar.extractfile(member).read()
            if key is not None:
                check()
        except (tarfile.TarError, OSError, EOFError) as e:
            problems.append(f"{shard.file}: not a readable tar after {samples} samples ({type(e).__name__}: {e})")
        while reader.readinto(bytearray(1 << 20)):  # hash the end-of-archive padding the parser skipped
            pass
    sha256 = reader.sha256.hexdigest()
    if reader.size != shard.bytes:
        problems.append(f"{shard.file}: {reader.size} bytes, index says {shard.bytes}")
    if sha256 != shard.sha256:
        problems.append(f"{shard.file}: sha256 {sha256} differs from the index ({shard.sha256})")
    if not problems and samples != shard.samples:
        problems.append(f"{shard.file}: {samples} samples, index says {shard.samples}")
    return problems + damaged
