"""The shard loader's dealing at cluster size, simulated from index counts (no shard is opened): up to 64 nodes
x 8 ranks x 4 workers over the 115k samples of EMER-Coarse, with the pack job's equal shards."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shards.loader import Dealing, coverage, shard_advice

SAMPLES = 115_000


def equal_shards(samples: int, per_shard: int) -> tuple[int, ...]:
    full, rest = divmod(samples, per_shard)
    return (per_shard,) * full + ((rest,) if rest else ())


@pytest.mark.parametrize("nodes", [1, 8, 64])
def test_exactly_once_at_cluster_size(nodes):
    world, workers = nodes * 8, 4
    advice = shard_advice(SAMPLES, 256, world * workers)
    per_shard = advice["suggested_samples_per_shard"]
    dealing = Dealing(equal_shards(SAMPLES, per_shard), world, workers, batch_size=4, seed=0, resampled=False)
    assert len(dealing.counts) >= dealing.slots
    for epoch in (0, 1):
        c = coverage(dealing, epoch)
        print(f"{nodes} nodes, {per_shard}/shard, epoch {epoch}: {c}")
        assert c["read"] == c["distinct"] == c["samples"] == SAMPLES
        assert c["missed"] == c["repeats"] == 0


@pytest.mark.parametrize("nodes,per_shard", [(1, 256), (8, 256), (64, 256), (64, 14)])
def test_resampled_ranks_get_equal_batch_counts(nodes, per_shard):
    world, workers, batch = nodes * 8, 4, 2
    dealing = Dealing(equal_shards(SAMPLES, per_shard), world, workers, batch_size=batch, seed=0, resampled=True)
    c = coverage(dealing)
    imbalance = (c["missed"] + c["repeats"]) / SAMPLES
    print(f"{nodes} nodes x 8 ranks x 4 workers, {per_shard}/shard ({len(dealing.counts)} shards): "
          f"{c['distinct']:,} of {SAMPLES:,} distinct, {c['missed']:,} missed, {c['repeats']:,} repeats "
          f"({imbalance:.1%}); batches per rank {c['min_rank_batches']}-{c['max_rank_batches']}")
    assert c["min_rank_batches"] == c["max_rank_batches"] == workers * math.ceil(SAMPLES / (world * workers * batch))
    assert c["read"] == c["max_rank_batches"] * world * batch
    if len(dealing.counts) >= 4 * dealing.slots:  # shard_advice's layout: the epoch is nearly exactly once
        assert imbalance < 0.05


def test_shard_advice_names_the_fix():
    tight = shard_advice(SAMPLES, 256, 64 * 8 * 4)
    assert tight["shards"] == 450 and "too few shards" in tight["advice"]
    assert "--samples-per-shard 14" in tight["advice"]
    assert shard_advice(SAMPLES, 256, 8 * 4)["advice"].endswith("fine")


def read_until(dealing: Dealing, epoch: int, position: int) -> np.ndarray:
    """How often each sample was read once every rank handed out ``position`` items of ``epoch`` (ranks step
    in lockstep; item j of a rank comes from its reader j % readers, as in shards.loader._EpochStream)."""
    reads = np.zeros(sum(dealing.counts), np.int64)
    offsets = np.concatenate([[0], np.cumsum(dealing.counts)[:-1]])
    for slot in range(dealing.slots):
        worker = slot % dealing.readers
        done = max(0, -(-(position - worker) // dealing.readers))
        plan = dealing.plan(epoch, slot)
        taken = min(done, plan.batches) * dealing.batch_size
        for shard, positions in plan.picks():
            if taken <= 0:
                break
            np.add.at(reads, offsets[shard] + positions[:taken], 1)
            taken -= len(positions)
    return reads


def test_resume_at_another_world_size_skips_the_rest_of_the_interrupted_epoch():
    """Loader positions are per rank and per reading plan, so a run resumed on another world size (after
    ds_to_universal) starts the next epoch (affectgpt.train.session): exactly the samples of the interrupted
    epoch that no rank had read yet are skipped, and nothing is read twice. This is that set, and its size."""
    counts = equal_shards(10_000, 50)
    old = Dealing(counts, world_size=16, readers=4, batch_size=2, seed=0, resampled=False)
    stop = 30  # items each rank handed out before the interruption
    before = read_until(old, 0, stop)
    full = read_until(old, 0, 10**9)
    assert (full == 1).all()  # the uninterrupted epoch reads every sample once
    skipped = np.flatnonzero(before == 0)
    print(f"16 -> 8 ranks after {stop} batches per rank: {int(before.sum()):,} of {len(full):,} samples read, "
          f"{len(skipped):,} skipped until the next epoch")
    assert before.max() == 1 and len(skipped) == len(full) - int(before.sum())
    assert int(before.sum()) == 16 * stop * 2  # every rank's batches were full ones
    new = Dealing(counts, world_size=8, readers=4, batch_size=2, seed=0, resampled=False)
    assert (read_until(new, 1, 10**9) == 1).all()  # the next epoch, on the new layout, is whole again
