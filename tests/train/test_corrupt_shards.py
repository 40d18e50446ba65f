"""A corrupt shard under the real launcher (2 ranks, loader workers): one flipped bit stops the run naming the
shard and sample (data.on_corrupt=fail, the default), or is replaced, counted and reported (skip)."""

from __future__ import annotations

import json
import re
import shutil
import tarfile

import pytest

from affectgpt.run_metrics import DATA_CORRUPT_SKIPPED

from . import ds_launch as launch
from .ds_launch import stage1_cmd

pytestmark = pytest.mark.integration


def corrupt_copy(shards, tmp_path):
    """A copy of the shard dir with one bit flipped inside the first sample's JPEG filmstrip of one shard."""
    out = tmp_path / "shards"
    shutil.copytree(shards, out)
    shard = sorted(out.glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        info = next(m for m in tar.getmembers() if m.name.endswith(".frames.jpg"))
    data = bytearray(shard.read_bytes())
    data[info.offset_data + info.size // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    return out, f"{shard.name}:{info.name.split('.')[0]}"


def test_a_flipped_bit_stops_training_naming_shard_and_sample(tiny_recipe, train_shards, tmp_path):
    shards, where = corrupt_copy(train_shards["coarse"], tmp_path)
    log = tmp_path / "log.txt"
    cmd = stage1_cmd(tiny_recipe, {"coarse": shards}, tmp_path / "ckpt", "data.workers=2")
    assert launch.run(cmd, log, timeout=420) != 0
    assert f"{where}: frames.jpg differ(s) from the digest" in log.read_text()


def test_skip_trains_on_and_reports_the_corrupt_sample(tiny_recipe, train_shards, tmp_path):
    shards, where = corrupt_copy(train_shards["coarse"], tmp_path)
    log, ckpt = tmp_path / "log.txt", tmp_path / "ckpt"
    cmd = stage1_cmd(tiny_recipe, {"coarse": shards}, ckpt, "data.workers=2", "data.on_corrupt=skip", "max_steps=8")
    assert launch.run(cmd, log, timeout=420) == 0, log.read_text()[-3000:]
    text = log.read_text()
    totals = {int(t) for t in re.findall(r"data.on_corrupt=skip replaced \d+ corrupt sample\(s\) on this rank "
                                         r"\((\d+) on all ranks\)", text)}
    assert len(totals) == 1 and totals.pop() >= 1 and f"{where}: frames.jpg differ" in text, text[-3000:]
    records = [json.loads(line) for line in (ckpt / "metrics.jsonl").read_text().splitlines()]
    assert records[-2][DATA_CORRUPT_SKIPPED] >= 1  # the tracker got it (the last step's line)
