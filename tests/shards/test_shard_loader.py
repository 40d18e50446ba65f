"""The stateful shard loader: coverage, equal batch counts, determinism, save/restore."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from shards.loader import ShardLoader

COUNTS = [4, 4, 4, 4, 4, 3]  # 23 samples in 6 shards, the last one short like a real pack job's


def names(batches):
    return [[s["name"] for s in batch] for batch in batches]


def loader(directory, **kw):
    return ShardLoader(str(directory), **{"batch_size": 3, **kw})


@pytest.mark.parametrize("num_workers", [0, 2])
def test_samples_have_the_contract_shape(tmp_path, make_shards, num_workers):
    make_shards(tmp_path, COUNTS)
    batch = next(iter(loader(tmp_path, num_workers=num_workers)))
    sample = batch[0]
    assert len(batch) == 3
    assert isinstance(sample["frames"], np.ndarray) and isinstance(sample["audio"], np.ndarray)
    assert sample["frames"].shape == (2, 16, 16, 3) and sample["audio"].dtype == np.float32
    assert isinstance(sample["labels"], list) and isinstance(sample["has_audio"], bool)


def test_starting_workers_leaves_the_global_torch_rng_alone(tmp_path, make_shards):
    """Training draws dropout masks from the global RNG; a resumed run starts the workers at another point."""
    make_shards(tmp_path, COUNTS)
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    next(iter(loader(tmp_path, num_workers=1)))
    assert torch.equal(torch.rand(3), want)


def stack_frames(samples):
    return {"frames": torch.from_numpy(np.stack([s["frames"] for s in samples])), "names": [s["name"] for s in samples]}


def test_collate_fn_runs_in_the_workers_and_its_tensors_stay_tensors(tmp_path, make_shards):
    make_shards(tmp_path, COUNTS)
    batches = list(loader(tmp_path, num_workers=2, collate_fn=stack_frames, resampled=False))
    assert all(isinstance(b["frames"], torch.Tensor) and b["frames"].shape[1:] == (2, 16, 16, 3) for b in batches)
    assert sorted(n for b in batches for n in b["names"]) == [f"s{i:04d}" for i in range(23)]


def test_exact_mode_covers_every_sample_once_across_2_ranks_x_2_workers(tmp_path, make_shards):
    make_shards(tmp_path, COUNTS)
    seen = Counter()
    for rank in range(2):
        ld = loader(tmp_path, rank=rank, world_size=2, num_workers=2, resampled=False, seed=3)
        batches = names(ld)
        assert len(batches) == len(ld)
        seen.update(n for batch in batches for n in batch)
    assert seen == Counter(f"s{i:04d}" for i in range(23))


def test_exact_mode_needs_a_shard_per_reader(tmp_path, make_shards):
    make_shards(tmp_path, [4, 4, 4])
    with pytest.raises(ValueError, match="3 shards cannot feed 2 ranks x 2 workers = 4 readers"):
        loader(tmp_path, world_size=2, num_workers=2, resampled=False)
    loader(tmp_path, world_size=2, num_workers=2, resampled=True)  # resampling serves any reader count


def test_resampled_mode_gives_every_rank_the_same_full_batches(tmp_path, make_shards):
    make_shards(tmp_path, [4, 4, 4])  # fewer shards than readers, and 12 samples for 2 x 2 readers
    lengths = set()
    for rank in range(2):
        ld = loader(tmp_path, rank=rank, world_size=2, num_workers=2, batch_size=2)
        batches = names(ld)
        lengths.add((len(ld), len(batches)))
        assert all(len(b) == 2 for b in batches)
    assert lengths == {(4, 4)}  # ceil(12 / (4 readers * 2)) = 2 batches per reader, 2 readers per rank


def test_order_is_deterministic_per_seed_and_epoch(tmp_path, make_shards):
    make_shards(tmp_path, COUNTS)
    a, b = loader(tmp_path, seed=1), loader(tmp_path, seed=1)
    first = names(a)
    assert first == names(b)
    assert names(a) != first  # the next epoch reshuffles
    assert names(loader(tmp_path, seed=2)) != first
    assert a.epoch == 2


def test_iteration_advances_epochs_and_set_epoch_rewinds(tmp_path, make_shards):
    make_shards(tmp_path, COUNTS)
    ld = loader(tmp_path, seed=5)
    epoch0 = names(ld)
    ld.set_epoch(0)
    assert names(ld) == epoch0


def take(ld, count):
    """The next ``count`` batches' names, running into following epochs as a training loop would."""
    out = []
    while len(out) < count:
        for batch in ld:
            out.append([s["name"] for s in batch])
            if len(out) == count:
                break
    return out


@pytest.mark.parametrize("num_workers,world_size,stop", [(0, 1, 3), (2, 1, 3), (2, 1, 6), (2, 2, 3), (2, 1, 11)])
def test_restored_position_continues_with_identical_batches(tmp_path, make_shards, num_workers, world_size, stop):
    make_shards(tmp_path, COUNTS)
    kw = {"num_workers": num_workers, "rank": world_size - 1, "world_size": world_size, "seed": 7}
    reference = take(loader(tmp_path, **kw), stop + 6)
    run = loader(tmp_path, **kw)
    taken = take(run, stop)
    resumed = loader(tmp_path, **kw)
    resumed.load_state_dict(run.state_dict())
    assert taken + take(resumed, 6) == reference


def test_exact_mode_restore_skips_placeholders_correctly(tmp_path, make_shards):
    make_shards(tmp_path, [6, 6, 1, 5])  # seed 0 deals 7 and 11 samples: 3 batches + a placeholder vs 4
    kw = {"num_workers": 2, "resampled": False, "seed": 0, "batch_size": 3}
    reference = names(loader(tmp_path, **kw))
    assert sorted(len(b) for b in reference) == [1, 2, 3, 3, 3, 3, 3]
    for stop in range(1, len(reference)):
        run = loader(tmp_path, **kw)
        it = iter(run)
        taken = [[s["name"] for s in next(it)] for _ in range(stop)]
        resumed = loader(tmp_path, **kw)
        resumed.load_state_dict(run.state_dict())
        assert taken + names(resumed) == reference


def test_state_from_another_setup_is_refused(tmp_path, make_shards):
    make_shards(tmp_path, COUNTS)
    state = loader(tmp_path, world_size=2).state_dict()
    with pytest.raises(ValueError, match="world_size: saved 2, now 1"):
        loader(tmp_path).load_state_dict(state)
