"""How batches travel from DataLoader worker processes to the training process without being copied twice.

A worker decodes each batch straight into a buffer of its ``SlotRing``: shared memory made once per epoch.
``pack`` replaces every numpy array of the collated item by a reference (offset, dtype, shape, strides) into
that slot, so what goes through the DataLoader's queue is a few hundred bytes; ``unpack`` in the main process
copies the arrays out of the slot into its own memory and frees the slot for the worker to reuse.

Why not let torch carry the arrays: torch sends every tensor through a freshly created shared-memory segment,
and writing ~10 MB of fresh segment per batch (a page fault per 4 KB of tmpfs) plus copying the arrays into a
tensor first cost the workers as much CPU as decoding the JPEGs (measured by benchmarks/loader_throughput.py).
Writing into slots that stay mapped costs nothing extra, and the main process's copy lands in memory its
allocator reuses.

Slot order: a worker fills slots round-robin and hands a slot over only when the item it sends refers to it
(a batch that ``collate_fn`` turned into new tensors leaves the slot with the worker, to be reused at once).
The main process frees slots in the order it receives a worker's items, which is the order they were handed
over, so once the worker holds a permit of ``free`` the next slot in turn is free. DataLoader keeps at most
``prefetch_factor`` requests per worker in flight, so ``prefetch_factor + 1`` slots mean a worker never waits.

Arrays that ``collate_fn`` makes anew (not in the slot) are packed into one fresh uint8 tensor per item (one
shared-memory segment instead of one per array); tensors stay tensors, carried by torch as usual. A tensor
that views a slot keeps the slot handed over until torch has copied it out (before the item reaches the main
process), so reusing the slot can never overwrite data still in flight.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

ALIGN = 64  # every array starts on a 64-byte boundary, aligned for any dtype and for SIMD copies


def aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN


class Arena:
    """A bump allocator over one buffer, in the shape of ``shards.schema.Allocate``. When the buffer is full it
    falls back to ``np.empty`` (still correct, just copied once more on the way)."""

    def __init__(self, buffer: np.ndarray):
        self.buffer, self.used = buffer, 0

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        start = aligned(self.used)
        if start + nbytes > self.buffer.size:
            return np.empty(shape, dtype)
        self.used = start + nbytes
        return self.buffer[start : start + nbytes].view(dtype).reshape(shape)


class SlotRing:
    """One worker's shared-memory slots (see the module docstring). Made in the main process before the workers
    start; it reaches them with the dataset (inherited under fork, passed as file descriptors otherwise).
    ``reset`` readies it for the next set of workers once the previous ones are gone."""

    def __init__(self, worker: int, slots: int, slot_bytes: int, context: Any):
        self.worker, self.context = worker, context
        self.buffers = [torch.empty(slot_bytes, dtype=torch.uint8).share_memory_() for _ in range(slots)]
        self.owner = os.getpid()
        self.reset()

    def reset(self) -> None:
        self.free = self.context.Semaphore(len(self.buffers))
        self.turn, self.holding = 0, False  # worker side: the slot filled next, and whether it holds its permit

    def arena(self) -> Arena:
        """Worker side: an allocator over the slot for the next batch."""
        if not self.holding:
            while not self.free.acquire(timeout=5.0):
                if os.getppid() != self.owner:
                    raise RuntimeError("the training process is gone; stopping this loader worker")
            self.holding = True
        return Arena(self.buffers[self.turn].numpy())

    def hand_over(self) -> int:
        """Worker side: the current slot leaves with an item; the main process frees it."""
        slot, self.turn, self.holding = self.turn, (self.turn + 1) % len(self.buffers), False
        return slot

    def release(self) -> None:
        """Main side: the oldest handed-over slot is copied out and may be refilled."""
        self.free.release()


class _Packed:
    def __init__(self, skeleton: Any, buffer: torch.Tensor | None, worker: int, slot: int | None):
        self.skeleton, self.buffer, self.worker, self.slot = skeleton, buffer, worker, slot


class _ArrayRef:
    def __init__(self, in_slot: bool, offset: int, dtype: str, shape: tuple[int, ...], strides: tuple[int, ...]):
        self.in_slot, self.offset, self.dtype, self.shape, self.strides = in_slot, offset, dtype, shape, strides


def pack(item: Any, ring: SlotRing) -> Any:
    """Worker side: ``item`` with its numpy arrays replaced by references (see the module docstring)."""
    slot = ring.buffers[ring.turn]
    lo = slot.data_ptr() if ring.holding else -1
    hi = lo + slot.numel() if ring.holding else -1
    fresh: list[tuple[np.ndarray, _ArrayRef]] = []
    size, touches_slot = 0, False

    def strip(x: Any) -> Any:
        nonlocal size, touches_slot
        if isinstance(x, np.ndarray):
            start = x.__array_interface__["data"][0]
            first, last = np.lib.array_utils.byte_bounds(x)
            if lo <= first and last <= hi:
                touches_slot = True
                return _ArrayRef(True, start - lo, x.dtype.str, x.shape, x.strides)
            ref = _ArrayRef(False, size, x.dtype.str, x.shape, None)
            fresh.append((x, ref))
            size += aligned(x.nbytes)
            return ref
        if isinstance(x, torch.Tensor):
            storage = x.untyped_storage()
            touches_slot |= storage.data_ptr() < hi and lo < storage.data_ptr() + storage.nbytes()
            return x
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(strip(v) for v in x)
        return x

    skeleton = strip(item)
    if not fresh and not touches_slot:
        return item
    buffer = None
    if fresh:
        buffer = torch.empty(size, dtype=torch.uint8)
        flat = buffer.numpy()
        for array, ref in fresh:
            flat[ref.offset : ref.offset + array.nbytes] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    return _Packed(skeleton, buffer, ring.worker, ring.hand_over() if touches_slot else None)


def unpack(item: Any, rings: list[SlotRing]) -> Any:
    """Main side: the item as the worker's ``collate_fn`` returned it, its arrays owned by this process."""
    if not isinstance(item, _Packed):
        return item
    ring = rings[item.worker]
    slot = ring.buffers[item.slot].numpy() if item.slot is not None else None
    flat = item.buffer.numpy() if item.buffer is not None else None

    def fill(x: Any) -> Any:
        if isinstance(x, _ArrayRef):
            if x.in_slot:
                return np.ndarray(x.shape, x.dtype, buffer=slot, offset=x.offset, strides=x.strides).copy()
            dtype = np.dtype(x.dtype)
            count = int(np.prod(x.shape, dtype=np.int64)) * dtype.itemsize
            return flat[x.offset : x.offset + count].view(dtype).reshape(x.shape)
        if isinstance(x, dict):
            return {k: fill(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(fill(v) for v in x)
        return x

    try:
        return fill(item.skeleton)
    finally:
        if item.slot is not None:
            ring.release()
