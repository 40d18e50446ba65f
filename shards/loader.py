"""The training loader: batches of samples from a shard directory, deterministic and resumable.

    loader = ShardLoader("work/shards/coarse", batch_size=8, rank=rank, world_size=world_size,
                         num_workers=2, seed=0, collate_fn=model.collator(train=True))
    loader.load_state_dict(checkpoint["loader"])     # optional: continue where a run stopped
    for epoch in range(loader.epoch, epochs):
        for batch in loader:                         # one epoch; then loader.epoch += 1
            ...
            checkpoint["loader"] = loader.state_dict()

How an epoch is read (all randomness from ``numpy.random.default_rng`` seeded by (seed, epoch, ...)):

* Readers: every rank runs ``W = max(num_workers, 1)`` readers, one per DataLoader worker, so there are
  ``world_size * W`` reader slots. The shard list is shuffled with (seed, epoch) and dealt round-robin to the
  slots; a reader loads a whole shard, shuffles its samples and yields them in batches of ``batch_size`` (the
  pack job already shuffled the corpus into shards, so each shard is a random sample of it).
* ``resampled=True`` (training, the default): every reader yields the same number of full batches,
  ``ceil(samples / (slots * batch_size))``, so every rank sees ``len(loader)`` batches and DDP never waits on
  a rank that ran dry. A reader whose dealt shards run out continues with shards drawn at random (seeded by
  its slot); one with too many stops early. With the pack job's equal-sized shards nearly every sample is seen
  once per epoch, and no reader is ever idle, so any number of shards works for any number of slots.
* ``resampled=False`` (evaluation, coverage checks): every sample exactly once per epoch across all ranks and
  workers, the last batch of each reader possibly short. Ranks may then get different batch counts, so do not
  use it under DDP. It needs at least one shard per slot, else a ValueError says so.

Position: ``state_dict()`` records (epoch, batches handed out this epoch); ``load_state_dict`` restores it and
the next batches are exactly those an uninterrupted run would have produced. Restoring skips whole shards
from the index's counts without reading them, and skipped samples inside the current shard are never
decoded. The world size, worker count, batch size, seed, mode and shard set must match the saved ones.

Samples are the dicts of docs/CONTRACTS.md (numpy arrays, no torch); ``collate_fn(list_of_samples)`` runs in
the worker processes and must be picklable. Decoding is safe (see ``shards.schema``): nothing is unpickled.

Integrity: every sample's digests are checked as it is decoded, and a shard that ends early (truncated) is
noticed when it is read. ``on_corrupt="fail"`` (the default) raises ``CorruptSampleError`` naming the shard and
the sample key. ``on_corrupt="skip"`` logs the sample, records it in ``skipped`` and takes the next intact
sample of the same shard (in file order) in its place, so batch counts, positions and resumes stay exactly as
they would be; a shard with no intact sample left is an error either way.

Workers and signals: a SIGTERM sent to the whole process tree (a scheduler's preemption, the deepspeed
launcher stopping the job) does not reach the workers' work: the training process turns it into "checkpoint,
then exit" and needs batches until then. A SIGTERM from the training process itself (multiprocessing stops its
workers that way at exit, torch when it shuts a loader down) ends a worker at once, so a trainer that fails
never waits for its workers; and workers exit when the training process dies.


With workers, batches travel as torch's DataLoader moves tensors (shared memory, in ``/dev/shm``: containers
need ``--shm-size`` or ``--ipc=host``), so ``collate_fn`` should return tensors; the training collator's are
compact (uint8 frames, raw waveforms). ``pin_memory`` (for CUDA) pins them in the main process. Every batch
belongs to the caller: keeping one is always safe.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import signal
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from webdataset.tariterators import group_by_keys

from shards import storage
from shards.index import read_index
from shards.schema import CorruptSampleError, decode_sample

log = logging.getLogger(__name__)

STATE_VERSION = 1
PREFETCH = 2  # batches each worker prepares ahead (torch's default prefetch_factor)


def _identity(items: Any) -> Any:
    return items


def _sigterm_only_from(trainer: int, worker_id: int) -> None:
    """Worker start-up: SIGTERM ends this worker only when the training process ``trainer`` sends it (see the
    module docstring). Blocked in every thread, it is taken by one waiting thread that knows the sender.

    The same thread ends the worker once the trainer is gone. torch's own watchdog lets the worker return, but
    its exit then joins the result queue's feeder thread, which can block for ever on a pipe that a sibling
    worker (forked with its read end) keeps open."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait() -> None:
        while True:
            info = signal.sigtimedwait({signal.SIGTERM}, 1.0)
            if (info is not None and info.si_pid == trainer) or os.getppid() != trainer:
                # Stopped as asked, or orphaned: a non-zero code would make torch report a worker failure.
                os._exit(0)

    threading.Thread(target=wait, name="sigterm-from-trainer", daemon=True).start()


class ShardLoader:
    """Stateful iterable over batches of one rank's share of a shard directory.

    Args:
        shards_dir: directory or fsspec URL holding ``index.json`` and the shards it lists.
        batch_size: samples per batch (per rank).
        rank, world_size: this process's place among the data-parallel ranks.
        num_workers: DataLoader worker processes (0 = read in this process); part of the reading plan, so
            changing it changes the batch order.
        seed: with the epoch, decides every shuffle.
        collate_fn: ``list[Sample] -> batch``, run in the workers; default: the list itself.
        resampled: True for equal batch counts on every rank (training), False for exactly-once epochs.
        pin_memory: pin the tensors ``collate_fn`` makes in page-locked memory (for fast, asynchronous copies to
            a CUDA device); needs workers.
        on_corrupt: ``fail`` raises on a corrupt or lost sample, ``skip`` replaces it (module docstring).
    """

    def __init__(
        self,
        shards_dir: str,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
        collate_fn: Callable[[list[dict[str, Any]]], Any] | None = None,
        resampled: bool = True,
        pin_memory: bool = False,
        on_corrupt: Literal["fail", "skip"] = "fail",
    ):
        if on_corrupt not in ("fail", "skip"):
            raise ValueError(f"on_corrupt must be fail or skip, got {on_corrupt!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.shards_dir = str(shards_dir)
        index = read_index(self.shards_dir)
        fs, root = storage.location(self.shards_dir)
        self.config = index.config
        self.counts = [s.samples for s in index.shards]
        self.urls = [fs.unstrip_protocol(storage.join(root, s.file)) for s in index.shards]
        self.shard_digest = index.digest
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.num_workers, self.seed, self.resampled, self.pin_memory = num_workers, seed, resampled, pin_memory
        self.collate_fn = collate_fn or _identity
        self.on_corrupt = on_corrupt
        self.skipped: list[str] = []  # what on_corrupt=skip replaced, in the order the batches arrived
        self.readers = max(num_workers, 1)
        slots = world_size * self.readers
        if sum(self.counts) == 0:
            raise ValueError(f"{shards_dir}: the index lists no samples")
        if not resampled and len(self.counts) < slots:
            raise ValueError(
                f"{shards_dir}: {len(self.counts)} shards cannot feed {world_size} ranks x {self.readers} "
                f"workers = {slots} readers exactly once; use resampled=True, fewer workers, or repack with a "
                "smaller --samples-per-shard"
            )
        self.dealing = Dealing(tuple(self.counts), world_size, self.readers, batch_size, seed, resampled)
        self.epoch = 0
        self.position = 0  # reader items (batches or empty placeholders) handed out in this epoch

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning."""
        self.epoch, self.position = epoch, 0

    def __len__(self) -> int:
        """Batches this rank yields in the current epoch (the same every epoch when resampled)."""
        return sum(self._plan(self.epoch, worker).batches for worker in range(self.readers))

    def __iter__(self) -> Iterator[Any]:
        stream = _EpochStream(self, self.epoch, self.position)
        if self.num_workers == 0:
            items = iter(stream)
        else:
            # A generator of its own: starting the workers must not draw from the global torch RNG that the
            # training step uses (dropout), as a resumed run starts them at another point of that stream.
            workers_seed = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            items = iter(torch.utils.data.DataLoader(
                stream, batch_size=None, num_workers=self.num_workers, prefetch_factor=PREFETCH,
                collate_fn=_identity, pin_memory=self.pin_memory,
                worker_init_fn=functools.partial(_sigterm_only_from, os.getpid()),
                generator=workers_seed,
            ))
        for item in items:
            self.position += 1
            if item is not None:
                batch, skipped = item
                self.skipped += skipped
                yield batch
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "epoch": self.epoch, "position": self.position, **self._identity()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"loader state version {state.get('version')} is not {STATE_VERSION}")
        mismatched = {k: (state.get(k), v) for k, v in self._identity().items() if state.get(k) != v}
        if mismatched:
            detail = ", ".join(f"{k}: saved {old!r}, now {new!r}" for k, (old, new) in mismatched.items())
            raise ValueError(f"cannot continue the saved loader position exactly ({detail})")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def _identity(self) -> dict[str, Any]:
        return {"seed": self.seed, "rank": self.rank, "world_size": self.world_size, "readers": self.readers,
                "batch_size": self.batch_size, "resampled": self.resampled, "shards": self.shard_digest}

    def _plan(self, epoch: int, worker: int) -> _ReaderPlan:
        return self.dealing.plan(epoch, self.rank * self.readers + worker)


@dataclass(frozen=True)
class Dealing:
    """Who reads what: the shards' sample counts dealt to ``world_size x readers`` reader slots. Pure
    arithmetic on the index's counts (no shard is opened), so a cluster-sized reading plan can be checked here."""

    counts: tuple[int, ...]
    world_size: int
    readers: int  # per rank
    batch_size: int
    seed: int
    resampled: bool

    @property
    def slots(self) -> int:
        return self.world_size * self.readers

    def plan(self, epoch: int, slot: int) -> _ReaderPlan:
        return _ReaderPlan(self, epoch, slot)


class _ReaderPlan:
    """What one reader slot reads in one epoch: a shard sequence and how many samples to take from it."""

    def __init__(self, dealing: Dealing, epoch: int, slot: int):
        self.dealing, self.epoch, self.slot = dealing, epoch, slot
        counts = dealing.counts
        order = np.random.default_rng([dealing.seed, epoch]).permutation(len(counts))
        self.dealt = [int(i) for i in order[slot :: dealing.slots]]
        if dealing.resampled:
            per_reader = math.ceil(sum(counts) / (dealing.slots * dealing.batch_size))
            self.samples = per_reader * dealing.batch_size
        else:
            self.samples = sum(counts[i] for i in self.dealt)
        self.batches = math.ceil(self.samples / dealing.batch_size)

    def shards(self) -> Iterator[int]:
        yield from self.dealt
        if self.dealing.resampled:  # endless top-up for readers whose dealt shards hold too few samples
            rng = np.random.default_rng([self.dealing.seed, self.epoch, self.slot, 1])
            while True:
                yield int(rng.integers(len(self.dealing.counts)))

    def picks(self, skip: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """(shard, positions in it) of this plan's samples after the first ``skip``, in reading order; shards
        wholly skipped are left out."""
        remaining = self.samples - skip
        for visit, shard in enumerate(self.shards()):
            if remaining <= 0:
                return
            count = self.dealing.counts[shard]
            if skip >= count:
                skip -= count
                continue
            order = np.random.default_rng([self.dealing.seed, self.epoch, self.slot, visit, 0]).permutation(count)
            yield shard, order[skip : skip + remaining]
            remaining -= min(count - skip, remaining)
            skip = 0

    def members_from(self, urls: list[str], skip: int,
                     on_corrupt: str) -> Iterator[Iterator[tuple[dict[str, bytes], str]]]:
        """For each of this plan's samples after the first ``skip``: its (tar members, "shard:key"), then those
        of the samples that may stand in for it (``_candidates``). Shards wholly skipped are not opened, and
        nothing is decoded here."""
        for shard, positions in self.picks(skip):
            count = self.dealing.counts[shard]
            raw = _read_shard(urls[shard], count, on_corrupt)
            for i in positions:
                yield _candidates(raw, int(i), count, urls[shard])


class _EpochStream(torch.utils.data.IterableDataset):
    """One rank's epoch from a position on, as the items torch's DataLoader interleaves round-robin.

    All readers of a rank emit the same number of items (batches, then ``None`` placeholders that the loader
    drops), so item ``j`` of the epoch always comes from reader ``j % W``. When a restored epoch starts at
    position ``p``, DataLoader worker ``i`` plays reader ``(i + p) % W``, so the first item delivered is item p.
    """

    def __init__(self, loader: ShardLoader, epoch: int, position: int):
        self.loader, self.epoch, self.position = loader, epoch, position

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        readers = self.loader.readers
        reader = ((info.id if info else 0) + self.position) % readers
        plans = [self.loader._plan(self.epoch, w) for w in range(readers)]
        items = max(p.batches for p in plans)
        plan = plans[reader]
        # Items of this reader already handed out: those with j * W + reader < position.
        done = max(0, -(-(self.position - reader) // readers))
        batch: list[dict[str, Any]] = []
        skipped: list[str] = []
        skip = min(done, plan.batches) * self.loader.batch_size
        for candidates in plan.members_from(self.loader.urls, skip, self.loader.on_corrupt):
            batch.append(self._decode(candidates, skipped))
            if len(batch) == self.loader.batch_size:
                yield self.loader.collate_fn(batch), skipped
                batch, skipped = [], []
        if batch:
            yield self.loader.collate_fn(batch), skipped
        for _ in range(items - max(done, plan.batches)):
            yield None

    def _decode(self, candidates: Iterator[tuple[dict[str, bytes], str]], skipped: list[str]) -> dict[str, Any]:
        """The first candidate that is intact; with on_corrupt=fail, only the first. Only the planned sample
        counts as skipped: a corrupt stand-in is counted when its own turn comes."""
        for n, (members, where) in enumerate(candidates):
            try:
                return decode_sample(members, self.loader.config, where)
            except CorruptSampleError as e:
                if self.loader.on_corrupt == "fail":
                    raise
                if n == 0:
                    log.warning("%s; skipped (on_corrupt=skip): the next intact sample of the shard takes its place",
                                e)
                    skipped.append(str(e))
        raise AssertionError("unreachable: _candidates raises when it runs out")


def _candidates(raw: list[dict[str, Any]], i: int, count: int, url: str) -> Iterator[tuple[dict[str, bytes], str]]:
    """Sample ``i`` of a shard, then the samples after it in file order (wrapping around), each as (members,
    "shard:key"); a sample lost to truncation has no members."""
    for j in range(i, i + count):
        j %= count
        if j < len(raw):
            yield {k: v for k, v in raw[j].items() if not k.startswith("__")}, f"{url}:{raw[j]['__key__']}"
        else:
            yield {}, f"{url}: sample {j + 1} of {count} (lost: the shard ends after {len(raw)})"
    raise CorruptSampleError(f"{url}: no intact sample left in this shard (run `affectgpt shards verify`)")


def _read_shard(url: str, count: int, on_corrupt: str) -> list[dict[str, Any]]:
    """All samples of a shard as raw members (bytes), through WebDataset's tar grouping. A shard that ends
    early or whose tar structure is damaged raises CorruptSampleError, or with ``on_corrupt="skip"`` gives the
    samples before the damage (the loader counts the rest as lost)."""
    raw: list[dict[str, Any]] = []
    try:
        with storage.location(url)[0].open(url, "rb") as f:
            data = f.read()
        for sample in group_by_keys({**member, "__url__": url} for member in _tar_members(data)):
            raw.append(sample)
        damage = None if len(raw) == count else f"holds {len(raw)} samples, index says {count}"
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        reason = str(e).split(" @ <")[0]  # webdataset appends the repr of its file object
        damage = f"{type(e).__name__}: {reason}"
    if damage is None:
        return raw
    after = f"after sample {raw[-1]['__key__']}" if raw else "before its first sample"
    message = f"{url}: truncated or damaged ({damage}), {after}"
    if on_corrupt == "fail" or len(raw) > count:
        raise CorruptSampleError(f"{message} (run `affectgpt shards verify`)")
    log.warning("%s; the %d samples lost are skipped (on_corrupt=skip)", message, count - len(raw))
    return raw


def _tar_members(data: bytes) -> Iterator[dict[str, Any]]:
    """The regular files of a tar held in memory, in order, as WebDataset's grouping takes them. Random access
    to the bytes is half the CPU of tarfile's streaming mode (the shard is read whole anyway); a member whose
    data ends early raises EOFError, as a streamed read would."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for info in tar:
            if info.isreg():
                member = data[info.offset_data : info.offset_data + info.size]
                if len(member) != info.size:
                    raise EOFError(f"{info.name} ends after {len(member)} of its {info.size} bytes")
                yield {"fname": info.name, "data": member}


SHARDS_PER_READER = 4  # what shard_advice aims for: whole-shard dealing then evens out to within 1/4 shard


def coverage(dealing: Dealing, epoch: int = 0) -> dict[str, int]:
    """Simulate one epoch of ``dealing`` from the index counts alone: samples read, distinct samples, repeats,
    samples missed, and the spread of batch counts over ranks."""
    seen = [np.zeros(c, np.int32) for c in dealing.counts]
    batches = [0] * dealing.world_size
    for slot in range(dealing.slots):
        plan = dealing.plan(epoch, slot)
        batches[slot // dealing.readers] += plan.batches
        for shard, positions in plan.picks():
            np.add.at(seen[shard], positions, 1)
    reads = np.concatenate(seen) if seen else np.zeros(0, np.int32)
    return {"samples": int(reads.size), "read": int(reads.sum()), "distinct": int((reads > 0).sum()),
            "repeats": int(np.maximum(reads - 1, 0).sum()), "missed": int((reads == 0).sum()),
            "min_rank_batches": min(batches), "max_rank_batches": max(batches)}


def shard_advice(samples: int, samples_per_shard: int, readers: int) -> dict[str, Any]:
    """Does a split of ``samples`` packed ``samples_per_shard`` to a shard feed ``readers`` reader slots (ranks x
    loader workers)? Readers get whole shards, so exactly-once reading (``resampled=False``) needs a shard per
    reader, and resampled training evens out best with several: a reader's share differs from the mean by up to
    one shard, which it tops up with random shards or leaves unread."""
    shards = math.ceil(samples / samples_per_shard)
    suggested = max(1, samples // (readers * SHARDS_PER_READER))
    if shards < readers:
        advice = (f"too few shards: exactly-once reading (evaluation) needs one per reader, and in training "
                  f"{readers - shards} readers have no shard of their own; repack with --samples-per-shard {suggested}")
    elif shards < SHARDS_PER_READER * readers:
        advice = (f"{shards / readers:.1f} shards per reader: enough for exactly-once reading; for an even training "
                  f"epoch (>= {SHARDS_PER_READER} per reader) use --samples-per-shard {suggested}")
    else:
        advice = f"{shards / readers:.1f} shards per reader: fine"
    return {"samples": samples, "samples_per_shard": samples_per_shard, "shards": shards, "readers": readers,
            "shards_per_reader": shards / readers, "suggested_samples_per_shard": min(suggested, samples_per_shard),
            "advice": advice}
