"""Checkpoints on disk: complete ones look complete, half-written ones never do.

Layout of ``checkpoint.dir``::

    step_00000100/                  one checkpoint ("tag")
        <DeepSpeed files>           model / optimizer / scheduler shards, written by engine.save_checkpoint
        trainer/rank_00000.json     per rank: RNG states and the data loader position (JSON, no pickles)
        manifest.json               written last, by rank 0, after every rank finished: step, world size,
                                    strategy, tracking run id, and every file with its size and xxh3-128 digest
    step_00000100_universal/        optional: DeepSpeed universal form, for resuming on another world size
    latest                          the tag of the newest complete checkpoint, replaced atomically
    best                            with eval.shards set: the tag of the best-validated checkpoint (same rules)

A tag dir without ``manifest.json`` is incomplete by definition. On resume and on export the checkpoint is
validated against its manifest, sizes and digests, before any file is unpickled; if a file is missing, truncated
or altered the error names it and the previous complete checkpoint is tried instead.
"""

from __future__ import annotations

import json
import logging
import re
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectgpt.atomic import write_atomic

log = logging.getLogger(__name__)

# 2: files map to {"bytes", "xxh3_128"}; 1 (read with a warning): files map to their size only.
SCHEMA_VERSION = 2
_READABLE_SCHEMAS = (1, 2)
_CHUNK = 8 << 20
MANIFEST = "manifest.json"
LATEST = "latest"
BEST = "best"
TRAINER_DIR = "trainer"
UNIVERSAL_SUFFIX = "_universal"
# Written into an exported model dir (checkpoint, step, MLflow run id); read by whatever starts from the export.
PROVENANCE = "provenance.json"
_TAG_RE = re.compile(r"^step_(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (incomplete, corrupt, or from an incompatible run)."""


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    step: int
    world_size: int
    meta: dict[str, Any]

    @property
    def tag(self) -> str:
        return self.path.name

    @property
    def universal_path(self) -> Path:
        return self.path.with_name(self.path.name + UNIVERSAL_SUFFIX)


def tag_for(step: int) -> str:
    return f"step_{step:08d}"


def atomic_write_text(path: Path, text: str) -> None:
    """Durable: a resumed run trusts the trainer state and ``latest`` without re-checking them."""
    write_atomic(path, text, durable=True)


def trainer_state_path(tag_dir: Path, rank: int) -> Path:
    return tag_dir / TRAINER_DIR / f"rank_{rank:05d}.json"


def write_trainer_state(tag_dir: Path, rank: int, state: dict[str, Any]) -> None:
    path = trainer_state_path(tag_dir, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(state))


def read_trainer_state(tag_dir: Path, rank: int) -> dict[str, Any]:
    path = trainer_state_path(tag_dir, rank)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read trainer state {path}: {e}") from e


def file_digest(path: Path) -> str:
    """xxh3-128 of the file's bytes: a fast non-cryptographic hash (many GB/s), enough to catch corruption."""
    import xxhash

    h = xxhash.xxh3_128()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def write_manifest(tag_dir: Path, meta: dict[str, Any]) -> None:
    """Seal a checkpoint: list every file under ``tag_dir`` with its size and digest. Call after all ranks
    wrote theirs."""
    files = {
        str(p.relative_to(tag_dir)): {"bytes": p.stat().st_size, "xxh3_128": file_digest(p)}
        for p in sorted(tag_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
    }
    manifest = {"schema": SCHEMA_VERSION, **meta, "files": files, "written_at": time.time()}
    atomic_write_text(tag_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def validate(tag_dir: Path) -> CheckpointInfo:
    """Check ``tag_dir`` against its manifest (every file present, of its size, with its digest); raise
    CheckpointError naming the first problem. Call before anything unpickles a file of the checkpoint."""
    manifest_path = tag_dir / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{tag_dir} is incomplete: it has no {MANIFEST} (the save never finished)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{manifest_path} is unreadable: {e}") from e
    schema = manifest.get("schema")
    if schema not in _READABLE_SCHEMAS:
        raise CheckpointError(f"{manifest_path}: schema {schema!r}, this code reads {_READABLE_SCHEMAS}")
    if schema == 1:
        log.warning("%s predates checkpoint digests: only file sizes are checked", manifest_path)
    for rel, entry in manifest["files"].items():
        size, digest = (entry, None) if schema == 1 else (entry["bytes"], entry["xxh3_128"])
        path = tag_dir / rel
        if not path.is_file():
            raise CheckpointError(f"{tag_dir} is damaged: file {rel} listed in {MANIFEST} is missing")
        if path.stat().st_size != size:
            raise CheckpointError(
                f"{tag_dir} is damaged: file {rel} has {path.stat().st_size} bytes, {MANIFEST} says {size}"
            )
        if digest is not None and (actual := file_digest(path)) != digest:
            raise CheckpointError(
                f"{tag_dir} is damaged: file {rel} has xxh3-128 {actual}, {MANIFEST} says {digest} (altered on disk)"
            )
    world_size = int(manifest["world_size"])
    for rank in range(world_size):
        rel = str(trainer_state_path(tag_dir, rank).relative_to(tag_dir))
        if rel not in manifest["files"]:
            raise CheckpointError(f"{tag_dir} is damaged: {rel} (trainer state of rank {rank}) was never written")
    return CheckpointInfo(tag_dir, int(manifest["step"]), world_size, manifest)


def step_of(path: Path) -> int | None:
    match = _TAG_RE.match(path.name)
    return int(match.group(1)) if match else None


def tags(root: Path) -> list[Path]:
    """Checkpoint tag dirs under ``root`` (complete or not), newest step first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and step_of(p) is not None]
    return sorted(found, key=lambda p: step_of(p), reverse=True)


def read_latest(root: Path) -> Path | None:
    return read_pointer(root, LATEST)


def read_pointer(root: Path, name: str) -> Path | None:
    """The tag dir a pointer file (``latest``, ``best``) names; None when there is no such file."""
    path = root / name
    if not path.is_file():
        return None
    return root / path.read_text(encoding="utf-8").strip()


def find_resumable(root: Path) -> CheckpointInfo | None:
    """The checkpoint to resume from: ``latest`` if valid, else the newest older complete one.

    None when ``root`` holds no checkpoint at all; CheckpointError when it holds some but none is usable,
    because silently starting over would throw the run's progress away.
    """
    latest = read_latest(root)
    candidates = ([latest] if latest is not None else []) + [p for p in tags(root) if p != latest]
    errors = []
    for path in candidates:
        try:
            info = validate(path)
        except CheckpointError as e:
            if (path / MANIFEST).exists() or path == latest:
                log.error("rejecting checkpoint: %s", e)
            errors.append(str(e))
            continue
        if errors:
            log.warning("falling back to the previous complete checkpoint %s", path)
        return info
    if errors:
        raise CheckpointError(f"no usable checkpoint in {root}: " + "; ".join(errors))
    return None


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` complete checkpoints, and incomplete dirs older than the newest
    complete one (left by crashes). Never touches what ``latest`` or ``best`` points at."""
    pointed = {p for p in (read_latest(root), read_pointer(root, BEST)) if p is not None}
    complete = [p for p in tags(root) if (p / MANIFEST).is_file()]
    keep = set(complete[:keep_last]) | pointed
    newest = step_of(complete[0]) if complete else None
    for path in tags(root):
        is_stale_partial = not (path / MANIFEST).is_file() and newest is not None and step_of(path) < newest
        if path not in keep and ((path / MANIFEST).is_file() or is_stale_partial):
            log.info("removing old checkpoint %s", path)
            shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(path.with_name(path.name + UNIVERSAL_SUFFIX), ignore_errors=True)


def universal_command(info: CheckpointInfo) -> str:
    """The exact command that turns ``info`` into the universal form a different world size can load."""
    out = info.universal_path
    return (
        f"python -m deepspeed.checkpoint.ds_to_universal --input_folder {info.path} "
        f"--output_folder {out}.partial && mv {out}.partial {out}"
    )


class CheckpointManager:
    """Collective save for one rank of a DeepSpeed job; ``barrier`` synchronises all ranks."""

    def __init__(self, root: Path, keep_last: int, rank: int, world_size: int, barrier: Callable[[], None]):
        self.root, self.keep_last, self.rank, self.world_size = root, keep_last, rank, world_size
        self._barrier = barrier

    def save(self, engine: Any, step: int, trainer_state: dict[str, Any], meta: dict[str, Any],
             best: bool = False) -> Path:
        """Every rank calls this at the same step. Returns the tag dir, complete and pointed at by ``latest``
        (and by ``best`` when ``best``)."""
        tag_dir = self.root / tag_for(step)
        if self.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            # A crash may have left a partial dir for this step, maybe from another world size: start clean.
            shutil.rmtree(tag_dir, ignore_errors=True)
            (tag_dir / MANIFEST).unlink(missing_ok=True)
        self._barrier()
        with _reporting_io_errors(tag_dir):
            engine.save_checkpoint(str(self.root), tag=tag_dir.name, save_latest=False)
            write_trainer_state(tag_dir, self.rank, trainer_state)
        self._barrier()
        if self.rank == 0:
            with _reporting_io_errors(tag_dir):
                write_manifest(tag_dir, {"step": step, "world_size": self.world_size, **meta})
                atomic_write_text(self.root / LATEST, tag_dir.name + "\n")
                if best:
                    atomic_write_text(self.root / BEST, tag_dir.name + "\n")
            prune(self.root, self.keep_last)
            log.info("checkpoint %s complete", tag_dir)
        self._barrier()
        return tag_dir


@contextmanager
def _reporting_io_errors(tag_dir: Path) -> Iterator[None]:
    """Turn a failed write (torch.save says only ``basic_ios::clear: iostream error``) into an error naming the
    checkpoint, its newest file, the free space and any file-size limit. ``latest`` is untouched."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        raise CheckpointError(_write_failure(tag_dir, e)) from e


def _write_failure(tag_dir: Path, error: Exception) -> str:
    files = [p for p in tag_dir.rglob("*") if p.is_file()] if tag_dir.is_dir() else []
    newest = max(files, key=lambda p: p.stat().st_mtime_ns, default=None)
    usage = shutil.disk_usage(tag_dir.parent)
    parts = [f"writing checkpoint {tag_dir} failed: {error}"]
    if newest is not None:
        parts.append(f"newest file in it: {newest} ({newest.stat().st_size} bytes)")
    parts.append(f"{usage.free / 2**30:.2f} GiB free of {usage.total / 2**30:.2f} GiB on {tag_dir.parent}")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        parts.append(f"this process may not write files larger than {limit} bytes (ulimit -f)")
    latest = read_latest(tag_dir.parent)
    parts.append(f"{LATEST} still names {latest.name if latest else 'no checkpoint'}")
    return "; ".join(parts)
