"""Small shard directories built straight from arrays (no video decoding), for fast unit tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from shards.index import Index, write_index
from shards.schema import PackConfig, encode_sample, tar_key
from shards.writer import ShardWriter

TINY = PackConfig(frames=2, size=16, sample_rate=1000, max_audio_seconds=0.5, samples_per_shard=4)


def tiny_sample(i: int, cfg: PackConfig = TINY, name: str | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """Sample ``i``: flat frames of grey level 10*i (survives JPEG) and a short tone; every third has no audio."""
    record = {"name": name or f"s{i:04d}", "subtitle": f"sub {i}", "description": f"desc {i}",
              "labels": ["happy", "calm"][: i % 3], "split": "coarse", "source": {"row": i + 2}}
    frames = np.full((cfg.frames, cfg.size, cfg.size, 3), (10 * i) % 250, np.uint8)
    audio = None if i % 3 == 2 else np.sin(np.arange(100, dtype=np.float32) * (i + 1) / 10) * 0.5
    return record, frames, audio


@pytest.fixture
def make_shards() -> Callable[..., Index]:
    def make(directory: str | Path, counts: list[int], cfg: PackConfig = TINY) -> Index:
        infos, start = [], 0
        for n, count in enumerate(counts):
            with ShardWriter(str(directory), f"coarse-{n:06d}.tar") as w:
                for i in range(start, start + count):
                    record, frames, audio = tiny_sample(i, cfg)
                    w.add(tar_key(record["name"]), encode_sample(record, frames, audio, cfg))
            infos.append(w.info)
            start += count
        no_audio = sum(1 for i in range(start) if i % 3 == 2)
        index = Index("coarse", cfg, infos, no_audio=no_audio, quarantined=0, source={"rows": start})
        write_index(str(directory), index)
        return index

    return make
