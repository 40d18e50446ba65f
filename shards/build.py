"""Corpus records -> a finished shard directory, in three steps that any executor can drive:

1. ``plan_shards``: deal the records (shuffled with the config's seed) into shards of ``samples_per_shard``.
   The plan depends only on the CSV, the video sizes and the config, so a resubmitted job plans the same shards.
   Shards are sized by sample count, not bytes, for that reason: bytes are only known after decoding. At
   ~190 KB per clip (8 frames of 224x224, 3 s of audio), the default 256 clips make ~50 MB shards.
2. ``pack_shard`` (one per shard, in parallel): decode each clip through ``affectgpt.media.decode_clip``,
   write the shard atomically, then a done-marker ``OUT/.pack/<shard>.json`` with its result. A shard whose
   marker matches the plan and whose file still has the recorded size and sha256 is kept, not redone.
3. ``finish``: ``quarantine.csv``, then ``index.json`` last.

``prepare`` runs before step 2: it removes ``index.json`` first (the directory stops looking finished before
anything in it changes), temporary files of killed writers, and shards of an older plan.

Quarantine (``OUT/quarantine.csv``: name, row, reason): CSV row problems from ``affectgpt.corpus.scan_csv``
(missing cells, empty or non-UTF-8 subtitle, duplicate name, missing video) and media errors from
``decode_clip`` (empty, truncated or undecodable file). A video without an audio track is NOT quarantined: the
sample is kept with ``has_audio`` false and empty audio (the model has a "missing audio" embedding, and a
silent clip still has a face and a subtitle to learn from); the index counts these as ``no_audio``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from affectgpt.corpus import Record, RowProblem
from affectgpt.media import MediaError, decode_clip
from shards import storage
from shards.index import INDEX_FILE, QUARANTINE_FILE, Index, ShardIndexError, read_index, write_index
from shards.schema import SCHEMA_VERSION, PackConfig, encode_sample, tar_key
from shards.writer import ShardInfo, ShardWriter

log = logging.getLogger(__name__)

STATE_DIR = ".pack"
SHARD_NAME = re.compile(r"^(?P<split>.+)-(?P<number>\d{6})\.tar$")


class PackError(RuntimeError):
    """The output directory cannot take this job (it holds another split's shards)."""


@dataclass(frozen=True)
class Quarantined:
    name: str
    row: int
    reason: str


@dataclass(frozen=True)
class ShardPlan:
    file: str
    records: tuple[Record, ...]
    digest: str  # of schema, config, split and every record (text and video size): what a kept shard must match


@dataclass(frozen=True)
class ShardResult:
    file: str
    digest: str
    info: ShardInfo | None  # None when every record of the shard was quarantined (no file is written)
    quarantined: tuple[Quarantined, ...]
    no_audio: int
    reused: bool = False

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ShardResult:
        data = json.loads(text)
        return cls(file=data["file"], digest=data["digest"],
                   info=ShardInfo(**data["info"]) if data["info"] else None,
                   quarantined=tuple(Quarantined(**q) for q in data["quarantined"]),
                   no_audio=data["no_audio"], reused=True)


def plan_shards(records: list[Record], split: str, cfg: PackConfig) -> list[ShardPlan]:
    order = np.random.default_rng(cfg.seed).permutation(len(records))
    shuffled = [records[i] for i in order]
    plans = []
    for number, start in enumerate(range(0, len(shuffled), cfg.samples_per_shard)):
        chunk = tuple(shuffled[start : start + cfg.samples_per_shard])
        plans.append(ShardPlan(f"{split}-{number:06d}.tar", chunk, _digest(chunk, split, cfg)))
    return plans


def prepare(out: str, split: str, plans: list[ShardPlan]) -> None:
    """Make ``out`` ready for (re)packing ``split`` under ``plans``; see the module docstring."""
    fs, root = storage.location(out)
    fs.makedirs(storage.join(root, STATE_DIR), exist_ok=True)
    names = set(_names(fs, root))
    others = {m["split"] for n in names if (m := SHARD_NAME.match(n)) and m["split"] != split}
    if INDEX_FILE in names:
        try:
            indexed = read_index(out).split
        except ShardIndexError:
            indexed = split  # a damaged index is replaced like any other
        if indexed != split:
            others.add(indexed)
    if others:
        raise PackError(f"{out} holds shards of split(s) {', '.join(sorted(others))}; pack each split into "
                        "its own directory")
    if INDEX_FILE in names:
        fs.rm(storage.join(root, INDEX_FILE))
    planned = {p.file for p in plans}
    state = storage.join(root, STATE_DIR)
    stale = [storage.join(root, n) for n in names if storage.is_temp(n) or (SHARD_NAME.match(n) and n not in planned)]
    stale += [storage.join(state, n) for n in _names(fs, state)
              if storage.is_temp(n) or n.removesuffix(".json") not in planned]
    for path in stale:
        log.info("removing %s (left by an interrupted or differently configured run)", path)
        fs.rm(path)


def pack_shard(plan: ShardPlan, split: str, cfg: PackConfig, out: str) -> ShardResult:
    """Decode and write one shard, or keep it if a previous run already wrote exactly this plan."""
    fs, root = storage.location(out)
    marker = storage.join(root, STATE_DIR, f"{plan.file}.json")
    kept = _kept(fs, root, marker, plan)
    if kept is not None:
        return kept
    quarantined: list[Quarantined] = []
    no_audio = 0
    with ShardWriter(out, plan.file) as writer:
        for record in plan.records:
            try:
                clip = decode_clip(record.video, num_frames=cfg.frames, size=cfg.size, sample_rate=cfg.sample_rate,
                                   max_audio_seconds=cfg.max_audio_seconds, threads=1)  # one task per CPU
            except MediaError as e:
                quarantined.append(Quarantined(record.name, record.row, e.reason))
                continue
            audio = clip.audio if clip.audio is not None and clip.audio.size else None
            no_audio += audio is None
            fields = {"name": record.name, "subtitle": record.subtitle, "description": record.description,
                      "labels": list(record.labels), "split": split,
                      "source": {"video": record.video.name, "row": record.row, "duration": round(clip.duration, 3)}}
            writer.add(tar_key(record.name), encode_sample(fields, clip.frames, audio, cfg))
    info = writer.info
    if info.samples == 0:  # an empty tar would only cost readers a file open
        fs.rm(storage.join(root, plan.file))
        info = None
    result = ShardResult(plan.file, plan.digest, info, tuple(quarantined), no_audio)
    storage.write_bytes_atomic(fs, marker, result.to_json().encode("utf-8"))
    return result


def finish(out: str, split: str, cfg: PackConfig, results: Iterable[ShardResult],
           row_problems: list[RowProblem], source: dict[str, str | int]) -> Index:
    """Write ``quarantine.csv`` and then ``index.json``; return the index."""
    results = sorted(results, key=lambda r: r.file)
    quarantined = [Quarantined(p.name, p.row, p.reason) for p in row_problems]
    quarantined += [q for r in results for q in r.quarantined]
    quarantined.sort(key=lambda q: (q.row, q.name))
    fs, root = storage.location(out)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", "row", "reason"])
    writer.writerows([q.name, q.row, q.reason] for q in quarantined)
    storage.write_bytes_atomic(fs, storage.join(root, QUARANTINE_FILE), buf.getvalue().encode("utf-8"))
    index = Index(split=split, config=cfg, shards=[r.info for r in results if r.info is not None],
                  no_audio=sum(r.no_audio for r in results), quarantined=len(quarantined), source=source)
    write_index(out, index)
    return index


def _names(fs, directory: str) -> list[str]:
    """File names in ``directory``; none when it does not exist (object stores have no empty directories)."""
    try:
        return [p.rpartition("/")[2] for p in fs.ls(directory, detail=False)]
    except FileNotFoundError:
        return []


def _kept(fs, root: str, marker: str, plan: ShardPlan) -> ShardResult | None:
    if not fs.exists(marker):
        return None
    try:
        result = ShardResult.from_json(fs.cat_file(marker).decode("utf-8"))
    except (ValueError, KeyError, TypeError):
        return None
    if result.digest != plan.digest:
        return None
    if result.info is None:
        return result
    path = storage.join(root, plan.file)
    if not fs.exists(path) or fs.size(path) != result.info.bytes:
        return None
    sha256 = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
    return result if sha256.hexdigest() == result.info.sha256 else None


def _digest(records: tuple[Record, ...], split: str, cfg: PackConfig) -> str:
    content = {
        "schema": SCHEMA_VERSION, "split": split, "config": dataclasses.asdict(cfg),
        "records": [[r.name, r.subtitle, r.description, r.labels, r.row, r.video.name, r.video.stat().st_size]
                    for r in records],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()
