"""``index.json``: the table of contents of a shard directory, written last (atomically) by the pack job.

A directory without ``index.json`` is not a finished shard set, whatever tar files it holds. Layout::

    {"schema_version": 2, "split": "coarse", "config": {PackConfig},
     "shards": [{"file": "coarse-000000.tar", "samples": 256, "bytes": ..., "sha256": "..."}, ...],
     "totals": {"shards": ..., "samples": ..., "bytes": ..., "no_audio": ...},
     "quarantined": 3, "source": {"corpus": "...", "csv": "...", "rows": ...}}

``no_audio`` counts kept samples whose video had no audio track (stored with ``has_audio`` false);
``quarantined`` counts the rows listed in ``quarantine.csv``. Every CSV row is one or the other:
``source.rows == totals.samples + quarantined``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from shards import storage
from shards.schema import SCHEMA_VERSION, PackConfig
from shards.writer import ShardInfo

INDEX_FILE = "index.json"
QUARANTINE_FILE = "quarantine.csv"


class ShardIndexError(ValueError):
    """A missing or malformed index.json; the message names the file."""


@dataclass(frozen=True)
class Index:
    split: str
    config: PackConfig
    shards: list[ShardInfo]
    no_audio: int
    quarantined: int
    source: dict[str, str | int] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    @property
    def digest(self) -> str:
        """One sha256 over the shards' own digests, in order: the identity of the split's content."""
        return hashlib.sha256("".join(s.sha256 for s in self.shards).encode()).hexdigest()

    def to_json(self) -> str:
        data = {
            "schema_version": self.schema_version,
            "split": self.split,
            "config": dataclasses.asdict(self.config),
            "shards": [dataclasses.asdict(s) for s in self.shards],
            "totals": {"shards": len(self.shards), "samples": self.samples, "bytes": self.bytes,
                       "no_audio": self.no_audio},
            "quarantined": self.quarantined,
            "source": self.source,
        }
        return json.dumps(data, indent=1, sort_keys=False) + "\n"


def write_index(directory: str, index: Index) -> None:
    fs, root = storage.location(directory)
    storage.write_bytes_atomic(fs, storage.join(root, INDEX_FILE), index.to_json().encode("utf-8"))


def read_index(directory: str) -> Index:
    """Parse and check ``<directory>/index.json``; errors name the file and the offending key."""
    fs, root = storage.location(directory)
    path = storage.join(root, INDEX_FILE)
    if not fs.exists(path):
        raise ShardIndexError(f"{directory}: no {INDEX_FILE} (not a finished shard directory; did the pack job "
                          "complete?)")
    where = f"{directory}/{INDEX_FILE}"
    try:
        data = json.loads(fs.cat_file(path).decode("utf-8"))
        version = data["schema_version"]
    except (ValueError, KeyError, TypeError) as e:
        raise ShardIndexError(f"{where}: malformed ({type(e).__name__}: {e})") from e
    if version != SCHEMA_VERSION:
        raise ShardIndexError(f"{where}: schema_version {version} is not supported (this code reads "
                              f"{SCHEMA_VERSION}); repack with this version")
    try:
        index = Index(
            split=str(data["split"]),
            config=_record(PackConfig, data["config"], "config"),
            shards=[_record(ShardInfo, s, f"shards[{i}]") for i, s in enumerate(data["shards"])],
            no_audio=int(data["totals"]["no_audio"]),
            quarantined=int(data["quarantined"]),
            source=dict(data.get("source", {})),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise ShardIndexError(f"{where}: malformed ({type(e).__name__}: {e})") from e
    totals = data["totals"]
    if (totals.get("samples"), totals.get("shards")) != (index.samples, len(index.shards)):
        raise ShardIndexError(f"{where}: totals {totals} disagree with the shard list "
                          f"({len(index.shards)} shards, {index.samples} samples)")
    return index


def _record(cls: type, data: Any, where: str) -> Any:
    """A flat dataclass of scalars from its JSON object: unknown keys and wrong types are errors naming the key
    (``true`` is not an int; an int is a float)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {data!r}")
    types = {f.name: f.type for f in dataclasses.fields(cls)}  # strings: the modules use postponed annotations
    unknown = sorted(set(data) - set(types))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(types))})")
    kinds = {"int": (int,), "float": (int, float), "str": (str,)}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, kinds[types[key]]):
            raise ValueError(f"{where}.{key}: expected {types[key]}, got {value!r}")
    return cls(**{k: float(v) if types[k] == "float" else v for k, v in data.items()})
