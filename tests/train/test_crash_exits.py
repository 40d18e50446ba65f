"""A failure anywhere ends the whole job with a non-zero code instead of hanging (real launcher, 2 ranks, loader
workers running). Each job runs under a timeout on the whole process tree: a hang fails the test."""

from __future__ import annotations

import shutil

import pytest

from . import ds_launch as launch
from .ds_launch import ROOT, deepspeed_cmd, overrides

pytestmark = pytest.mark.integration

FAULTY = "tests/train/faulty_train.py"
TIMEOUT = 420  # start-up takes 30 s idle, over 2 min on a 2-core machine shared by many jobs; a hang never ends


def _job(tiny_recipe, shards, tmp_path, *extra, script=launch.TRAIN, script_args=()):
    args = overrides(tiny_recipe, shards, tmp_path / "ckpt", "data.workers=2", "max_steps=1000", *extra)
    cmd = deepspeed_cmd(script, ROOT / "configs" / "stage1.yaml", *args)
    at = cmd.index(script) + 1
    return cmd[:at] + list(script_args) + cmd[at:]


def test_a_truncated_shard_ends_the_job(tiny_recipe, train_shards, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(train_shards["coarse"], shards)
    shard = sorted(shards.glob("*.tar"))[1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    log = tmp_path / "log.txt"
    rc = launch.run(_job(tiny_recipe, shards, tmp_path), log, timeout=TIMEOUT)
    assert rc != 0
    assert shard.name in log.read_text()


@pytest.mark.parametrize("fail_rank", [None, 1], ids=["every-rank", "rank-1-only"])
def test_an_exception_in_the_training_loop_ends_the_job(tiny_recipe, train_shards, tmp_path, fail_rank):
    script_args = ["--fail-after", "3", *(["--fail-rank", str(fail_rank)] if fail_rank is not None else [])]
    log = tmp_path / "log.txt"
    cmd = _job(tiny_recipe, train_shards["coarse"], tmp_path, script=FAULTY, script_args=script_args)
    rc = launch.run(cmd, log, timeout=TIMEOUT)
    assert rc != 0
    assert "injected failure after 3 batches" in log.read_text()
