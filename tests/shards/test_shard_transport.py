"""Batches from worker processes through reused shared-memory slots: the values a caller keeps never change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shards import transport
from shards.loader import ShardLoader

COUNTS = [4, 4, 4, 4, 4, 3]


def identity(samples):
    return samples


def tensor_views(samples):  # tensors sharing memory with the decoded arrays: torch copies them, asynchronously
    return [{"name": s["name"], "frames": torch.from_numpy(s["frames"]), "audio": s["audio"]} for s in samples]


def strided_views(samples):
    return [{"name": s["name"], "frames": s["frames"][:, ::2, ::-1], "audio": s["audio"][::3]} for s in samples]


def new_arrays(samples):
    return [{"name": s["name"], "frames": s["frames"] + 1, "audio": s["audio"].copy()} for s in samples]


def by_name(batches):
    out = {}
    for batch in batches:
        for s in batch:
            out[s["name"]] = (np.asarray(s["frames"]).copy(), s["audio"].copy())
    return out


@pytest.mark.parametrize("collate", [identity, tensor_views, strided_views, new_arrays])
def test_batches_kept_by_the_caller_stay_intact_while_workers_reuse_their_slots(tmp_path, make_shards, collate):
    make_shards(tmp_path, COUNTS)
    reference = by_name(ShardLoader(str(tmp_path), 1, collate_fn=collate, resampled=False))
    ld = ShardLoader(str(tmp_path), 2, num_workers=2, collate_fn=collate, resampled=False)
    kept = [batch for _ in range(2) for batch in ld]  # 6 batches per worker and epoch, 3 slots each
    assert len(kept) == 2 * len(ld)
    for batch in kept:
        for s in batch:
            frames, audio = reference[s["name"]]
            assert np.array_equal(np.asarray(s["frames"]), frames) and np.array_equal(s["audio"], audio)


def test_an_abandoned_epoch_does_not_share_memory_with_the_next(tmp_path, make_shards):
    make_shards(tmp_path, COUNTS)
    reference = by_name(ShardLoader(str(tmp_path), 2, resampled=False))
    ld = ShardLoader(str(tmp_path), 2, num_workers=2, resampled=False)
    batches = list(ld)  # a finished epoch leaves its shared memory to the next
    abandoned = iter(ld)
    batches.append(next(abandoned))  # its workers stay alive with batches prefetched into their slots
    ld.set_epoch(0)
    batches += list(ld)
    batches += list(abandoned)  # resumed after another epoch's workers ran
    assert sum(len(b) for b in batches) == 3 * len(reference)  # three whole epochs
    for batch in batches:
        for s in batch:
            assert np.array_equal(s["frames"], reference[s["name"]][0])


def test_unpacked_arrays_own_their_memory_and_the_slot_is_freed(tmp_path):
    ring = transport.SlotRing(0, 2, 4096, torch.multiprocessing.get_context())
    allocate = ring.arena()
    frames = allocate((4, 8), np.dtype(np.uint8))
    frames[:] = np.arange(32, dtype=np.uint8).reshape(4, 8)
    audio = allocate((5,), np.dtype(np.float32))
    audio[:] = 0.5
    item = transport.pack({"frames": frames, "audio": audio, "made": np.ones(3), "name": "x"}, ring)
    assert ring.turn == 1 and not ring.holding  # the slot left with the item
    assert ring.free.acquire(block=False) and not ring.free.acquire(block=False)  # one of two slots is taken
    ring.free.release()
    out = transport.unpack(item, [ring])
    ring.buffers[0].fill_(255)  # the worker refills the slot
    assert np.array_equal(out["frames"], np.arange(32).reshape(4, 8)) and np.all(out["audio"] == 0.5)
    assert np.array_equal(out["made"], np.ones(3)) and out["name"] == "x"
    assert ring.free.acquire(block=False)  # unpack freed the slot again


def test_a_batch_that_does_not_use_its_slot_leaves_it_with_the_worker(tmp_path):
    ring = transport.SlotRing(0, 2, 4096, torch.multiprocessing.get_context())
    ring.arena()((4,), np.dtype(np.uint8))
    item = transport.pack({"x": torch.zeros(3)}, ring)
    assert isinstance(item["x"], torch.Tensor) and ring.holding and ring.turn == 0


def test_the_arena_falls_back_to_private_memory_when_full():
    arena = transport.Arena(np.empty(128, np.uint8))
    a, b = arena((64,), np.dtype(np.uint8)), arena((100,), np.dtype(np.uint8))
    assert np.shares_memory(a, arena.buffer) and not np.shares_memory(b, arena.buffer)
