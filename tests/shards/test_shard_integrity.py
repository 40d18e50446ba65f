"""Integrity at the point of use: the loader checks every sample's digests and notices truncated shards; it
fails naming the shard and sample (on_corrupt=fail) or replaces and counts them (on_corrupt=skip)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from shards.loader import ShardLoader
from shards.schema import CorruptSampleError

COUNTS = [4, 4, 4, 4, 4, 3]


def flip_byte(shard: Path, member: str) -> None:
    """Flip one bit in the middle of ``member``'s data (same size: only a digest can notice)."""
    with tarfile.open(shard) as tar:
        info = tar.getmember(member)
    data = bytearray(shard.read_bytes())
    data[info.offset_data + info.size // 2] ^= 0x01
    shard.write_bytes(bytes(data))


def names(loader):
    return [[s["name"] for s in batch] for batch in loader]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_flipped_bit_fails_naming_shard_and_sample(tmp_path, make_shards, num_workers):
    make_shards(tmp_path, COUNTS)
    flip_byte(tmp_path / "coarse-000002.tar", "s0009.frames.jpg")
    loader = ShardLoader(str(tmp_path), 3, num_workers=num_workers, resampled=False)
    with pytest.raises(CorruptSampleError, match=r"coarse-000002\.tar:s0009: frames\.jpg differ"):
        names(loader)


def test_a_truncated_shard_fails_naming_the_shard(tmp_path, make_shards):
    make_shards(tmp_path, COUNTS)
    shard = tmp_path / "coarse-000001.tar"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    loader = ShardLoader(str(tmp_path), 3, num_workers=2, resampled=False)
    with pytest.raises(CorruptSampleError, match=r"coarse-000001\.tar: truncated or damaged .*after sample s000"):
        names(loader)


def test_a_shard_cut_inside_a_member_fails_naming_the_member(tmp_path, make_shards):
    make_shards(tmp_path, COUNTS)
    shard = tmp_path / "coarse-000001.tar"  # s0004..s0007
    with tarfile.open(shard) as tar:
        info = tar.getmember("s0005.frames.jpg")
    shard.write_bytes(shard.read_bytes()[: info.offset_data + info.size // 2])
    loader = ShardLoader(str(tmp_path), 3, num_workers=0, resampled=False)
    message = (r"coarse-000001\.tar: truncated or damaged \(EOFError: s0005\.frames\.jpg ends after \d+ of its "
               r"\d+ bytes\), after sample s0004")
    with pytest.raises(CorruptSampleError, match=message):
        names(loader)


def test_skip_replaces_corrupt_and_lost_samples_and_counts_them(tmp_path, make_shards):
    make_shards(tmp_path, COUNTS)
    clean = names(ShardLoader(str(tmp_path), 3, num_workers=2, seed=5))
    flip_byte(tmp_path / "coarse-000002.tar", "s0009.audio.npy")
    shard = tmp_path / "coarse-000004.tar"  # s0016..s0019: keep the first two samples whole
    with tarfile.open(shard) as tar:
        cut = tar.getmember("s0018.audio.npy").offset
    shard.write_bytes(shard.read_bytes()[:cut])
    loader = ShardLoader(str(tmp_path), 3, num_workers=2, seed=5, on_corrupt="skip")
    got = names(loader)
    # Same batch count and shapes, every sample but the three replaced in the same place.
    assert [len(b) for b in got] == [len(b) for b in clean]
    lost = {"s0009", "s0018", "s0019"}
    flat_clean, flat_got = sum(clean, []), sum(got, [])
    assert {n for n, m in zip(flat_clean, flat_got, strict=True) if n != m} == lost & set(flat_clean)
    assert not lost & set(flat_got)
    assert len(loader.skipped) == sum(n in lost for n in flat_clean)
    assert any("coarse-000002.tar:s0009: audio.npy differ" in s for s in loader.skipped)
    assert any("coarse-000004.tar: sample" in s and "lost" in s for s in loader.skipped)


def test_skip_keeps_resume_exact(tmp_path, make_shards):
    make_shards(tmp_path, COUNTS)
    flip_byte(tmp_path / "coarse-000003.tar", "s0013.json")
    kw = {"num_workers": 2, "seed": 1, "on_corrupt": "skip"}
    reference = names(ShardLoader(str(tmp_path), 3, **kw))
    for stop in (1, 3, 5):
        run = ShardLoader(str(tmp_path), 3, **kw)
        it = iter(run)
        taken = [[s["name"] for s in next(it)] for _ in range(stop)]
        resumed = ShardLoader(str(tmp_path), 3, **kw)
        resumed.load_state_dict(run.state_dict())
        assert taken + names(resumed) == reference
