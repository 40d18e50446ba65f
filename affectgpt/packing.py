"""Corpus -> records -> a finished shard directory: the one packing path, driven in this process
(``pack_split``) or by the Ray job (``ray_jobs.pack``, which passes a Ray ``run_shards``). The shard format
itself (schema, writer, index) is the ``shards`` package; this module adds what needs the corpus reader and
the decoder. Three steps that any executor can drive:

1. ``plan_shards``: deal the records (shuffled with the config's seed) evenly into as few shards of at most
   ``samples_per_shard`` as hold them (``PackConfig.shard_sizes``).
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

``clip_sample`` turns one video file into a training Sample through the same decode and encode, for
``affectgpt describe`` and pre-labelling.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectgpt.corpus import Record, RowProblem, scan_csv, split_csv
from affectgpt.media import Clip, MediaError, decode_clip
from shards import storage
from shards.index import INDEX_FILE, QUARANTINE_FILE, Index, ShardIndexError, read_index, write_index
from shards.schema import SCHEMA_VERSION, PackConfig, decode_sample, encode_sample, tar_key
from shards.writer import ShardInfo, ShardWriter

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class PackJobConfig:
    """Settings of the pack job (``python -m ray_jobs.pack``).

    corpus: corpus directory (videos/ + <split>.csv), absolute
    split: split(s) to pack (coarse, fine, test ...), one after the other in the one job
    out: output directory (absolute) or fsspec URL; with several splits a template naming each split's
        directory, e.g. /data/shards/{split}
    readers: training readers to plan the shards for, ranks x loader workers (e.g. 64 x 4): the job advises a
        samples_per_shard that feeds them all (0: it says how many readers the shards feed)
    """

    corpus: Path
    split: list[str]
    out: str
    pack: PackConfig = field(default_factory=PackConfig)
    readers: int = 0

    def __post_init__(self) -> None:
        if not self.split:
            raise ValueError("split: name at least one split")
        if len(set(self.split)) != len(self.split):
            raise ValueError(f"split: {self.split} names a split twice")
        if len(self.split) > 1 and "{split}" not in self.out:
            raise ValueError(f"out {self.out!r}: several splits need a template with {{split}}, "
                             "e.g. /data/shards/{split}, so each split gets its own directory")

    def out_of(self, split: str) -> str:
        return self.out.replace("{split}", split)


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
    plans, start = [], 0
    for number, size in enumerate(cfg.shard_sizes(len(shuffled))):
        chunk = tuple(shuffled[start : start + size])
        plans.append(ShardPlan(f"{split}-{number:06d}.tar", chunk, _digest(chunk, split, cfg)))
        start += size
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
                clip = _decode(record.video, cfg, threads=1)  # one task per CPU
            except MediaError as e:
                quarantined.append(Quarantined(record.name, record.row, e.reason))
                continue
            no_audio += not _has_audio(clip)
            fields = {"name": record.name, "subtitle": record.subtitle, "description": record.description,
                      "labels": list(record.labels), "split": split,
                      "source": {"video": record.video.name, "row": record.row, "duration": round(clip.duration, 3)}}
            writer.add(tar_key(record.name), _encode(fields, clip, cfg))
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


RunShards = Callable[[list[ShardPlan], str, PackConfig, str], Iterable[tuple[ShardPlan, ShardResult]]]
"""``run_shards(plans, split, cfg, out)`` runs ``pack_shard`` on every plan, yielding (plan, result) as each
finishes, in any order."""


def local_shards(plans: list[ShardPlan], split: str, cfg: PackConfig, out: str) -> Iterator[tuple[ShardPlan,
                                                                                                   ShardResult]]:
    """One shard after another in this process (tests, benchmarks' baseline, small corpora)."""
    for plan in plans:
        yield plan, pack_shard(plan, split, cfg, out)


@dataclass(frozen=True)
class PackReport:
    split: str
    out: str
    index: Index
    rows: int  # CSV rows read: index.samples + index.quarantined
    clips: int  # rows that passed the CSV checks and were decoded
    quarantined: list[Quarantined]  # every quarantined row, in row order
    reused: int  # shards kept from an earlier run
    seconds: float  # packing time, after planning
    first_shard: tuple[float, int] | None  # (seconds, clips done) when the first shard finished: start-up cost

    def summary(self) -> list[str]:
        """The job's closing lines: ``in = packed + quarantined``, sizes and throughput."""
        index, seconds = self.index, max(self.seconds, 1e-9)
        lines = [f"{self.split}: in {self.rows} = packed {index.samples} + quarantined {index.quarantined}; "
                 f"{index.no_audio} kept without audio; {len(index.shards)} shards ({self.reused} kept from an "
                 f"earlier run), {index.bytes / 1e6:.1f} MB in {self.seconds:.1f} s "
                 f"({self.clips / seconds:.1f} clips/s) -> {self.out}"]
        if self.first_shard is not None and self.seconds > self.first_shard[0]:
            first_s, first_clips = self.first_shard
            lines.append(f"first shard after {first_s:.1f} s (worker start-up and one shard); then "
                         f"{(self.clips - first_clips) / (self.seconds - first_s):.1f} clips/s")
        return lines


def pack_split(corpus: Path, split: str, out: str, cfg: PackConfig, run_shards: RunShards = local_shards,
               progress: bool = True) -> PackReport:
    """Pack ``corpus``'s ``split`` into ``out`` (a directory or fsspec URL): plan, prepare, run every shard
    through ``run_shards``, finish. Resumes what an interrupted run left, as described above."""
    from tqdm import tqdm

    csv_path = split_csv(corpus, split)
    records, problems = scan_csv(csv_path, corpus)
    rows = len(records) + len(problems)
    plans = plan_shards(records, split, cfg)
    prepare(out, split, plans)
    log.info("%s: %d rows (%d bad in the CSV) -> %d shards in %s", csv_path, rows, len(problems), len(plans), out)
    start = time.perf_counter()
    results: list[ShardResult] = []
    first_shard = None
    with tqdm(total=len(records), unit="clip", desc=f"pack {split}", mininterval=2, disable=not progress) as bar:
        for plan, result in run_shards(plans, split, cfg, out):
            results.append(result)
            bar.update(len(plan.records))
            if first_shard is None:
                first_shard = (time.perf_counter() - start, bar.n)
    seconds = time.perf_counter() - start
    index = finish(out, split, cfg, results, problems, {"corpus": str(corpus), "csv": csv_path.name, "rows": rows})
    quarantined = [Quarantined(p.name, p.row, p.reason) for p in problems]
    quarantined = sorted([*quarantined, *(q for r in results for q in r.quarantined)], key=lambda q: (q.row, q.name))
    return PackReport(split, out, index, rows, len(records), quarantined, sum(r.reused for r in results), seconds,
                      first_shard)


def clip_sample(path: str | Path, model_cfg: Any, subtitle: str = "") -> dict[str, Any]:
    """A Sample for one video file, decoded and stored exactly as ``pack_shard`` does (JPEG frames, int16
    audio), with the shapes of ``model_cfg`` (an AffectGPT recipe or anything with its four media fields)."""
    cfg = PackConfig(frames=model_cfg.num_frames, size=model_cfg.frame_size, sample_rate=model_cfg.sample_rate,
                     max_audio_seconds=model_cfg.max_audio_seconds)
    record = {"name": Path(path).stem, "subtitle": subtitle, "description": "", "labels": [], "split": "describe"}
    return decode_sample(_encode(record, _decode(Path(path), cfg), cfg), cfg, str(path))


def _decode(video: Path, cfg: PackConfig, threads: int = 0) -> Clip:
    return decode_clip(video, num_frames=cfg.frames, size=cfg.size, sample_rate=cfg.sample_rate,
                       max_audio_seconds=cfg.max_audio_seconds, threads=threads)


def _has_audio(clip: Clip) -> bool:
    return clip.audio is not None and clip.audio.size > 0


def _encode(fields: dict[str, Any], clip: Clip, cfg: PackConfig) -> dict[str, bytes]:
    return encode_sample(fields, clip.frames, clip.audio if _has_audio(clip) else None, cfg)


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
