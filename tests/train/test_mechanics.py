"""Checkpoint mechanics under the real launcher (2 CPU ranks, ZeRO-3, AffectGPT qwen2-tiny): SIGTERM writes a
checkpoint, a damaged checkpoint falls back to the previous one, and another world size is refused with the
command that converts the checkpoint, after which the run resumes on the new world size."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess

import psutil
import pytest
import torch

from affectgpt.run_metrics import TRAIN_LOSS

from . import ds_launch as launch
from .ds_launch import STEPS, consolidated, stage1_cmd

pytestmark = pytest.mark.integration


def test_sigterm_writes_checkpoint_and_exits(tiny_recipe, train_shards, tmp_path):
    ckpt, log = tmp_path / "ckpt", tmp_path / "log.txt"
    # A loader worker per rank (the CUDA default; CPU's is none): it must outlive the SIGTERM sent to the tree.
    cmd = stage1_cmd(tiny_recipe, train_shards, ckpt, "max_steps=100000", "checkpoint.every=100000",
                     "data.workers=1")
    proc = launch.start(cmd, log)
    launch.wait_for(lambda: "step 2 train/loss" in log.read_text(), timeout=300, proc=proc)
    # The rendezvous store listens on MASTER_ADDR (the launcher's default, 127.0.0.1) only, not on every interface.
    port = int(cmd[cmd.index("--master_port") + 1])
    store = [c.laddr.ip for p in psutil.Process(proc.pid).children(recursive=True)
             for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert set(store) == {"127.0.0.1"}, store  # (loader workers inherit the socket)
    launch.kill_tree(proc, signal.SIGTERM)
    proc.wait(timeout=120)
    text = log.read_text()
    assert "received SIGTERM" in text and "stopped at step" in text, text[-3000:]
    manifest = json.loads((ckpt / (ckpt / "latest").read_text().strip() / "manifest.json").read_text())
    assert 2 <= manifest["step"] < 100000


def flip_one_bit(path):
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)[0]
        f.seek(-1, 1)
        f.write(bytes([byte ^ 0x01]))


@pytest.mark.parametrize("damage,message", [
    (lambda p: p.unlink(), "zero_pp_rank_1_mp_rank_00_optim_states.pt listed in manifest.json is missing"),
    (flip_one_bit, "zero_pp_rank_1_mp_rank_00_optim_states.pt has xxh3-128"),
], ids=["missing", "flipped-bit"])
def test_damaged_latest_is_rejected_and_previous_used(stage1, tiny_recipe, train_shards, tmp_path, damage, message):
    ckpt, log = tmp_path / "ckpt", tmp_path / "log.txt"
    shutil.copytree(stage1, ckpt)
    damage(ckpt / f"step_{STEPS:08d}" / "zero_pp_rank_1_mp_rank_00_optim_states.pt")
    assert launch.run(stage1_cmd(tiny_recipe, train_shards, ckpt), log, timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert message in text, text[-3000:]
    assert f"resuming from {ckpt / f'step_{STEPS - 4:08d}'}" in text
    # Redoing the last 4 steps from the previous checkpoint reproduces the lost one exactly.
    want, got = consolidated(stage1), consolidated(ckpt)
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_other_world_size_is_refused_then_resumes_after_conversion(stage1, tiny_recipe, train_shards, tmp_path):
    ckpt, log = tmp_path / "ckpt", tmp_path / "log.txt"
    shutil.copytree(stage1, ckpt)
    cmd = stage1_cmd(tiny_recipe, train_shards, ckpt, f"max_steps={STEPS + 2}", ranks=1)
    assert launch.run(cmd, log, timeout=300) != 0
    text = log.read_text()
    assert "written by 2 ranks with zero3; this job has 1 ranks with zero3" in text, text[-3000:]
    convert = re.search(r"^\S*\s*(python -m deepspeed\.checkpoint\.ds_to_universal .*)$", text, re.M).group(1)
    subprocess.run(convert.replace("python ", f"{launch.BIN / 'python'} ", 1), shell=True, check=True,
                   capture_output=True, cwd=launch.ROOT)

    assert launch.run(cmd, tmp_path / "log2.txt", timeout=300) == 0, (tmp_path / "log2.txt").read_text()[-3000:]
    assert "resuming from the universal form" in (tmp_path / "log2.txt").read_text()
    before, after = consolidated(stage1), consolidated(ckpt, STEPS + 2)
    frozen = [k for k in before if ".encoder.model." in k]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # encoders restored, not re-inited
    assert json.loads((ckpt / f"step_{STEPS + 2:08d}" / "manifest.json").read_text())["world_size"] == 1


def test_gathering_per_block_trains_the_weights_of_gathering_per_module(stage1, tiny_recipe, train_shards, tmp_path):
    """dist.gather=block (the default: one ZeRO-3 hook per transformer block) changes when parameters are
    gathered, not what a step computes. Without DeepSpeed's per-module hooks (identity autograd nodes around
    every module) autograd sums some gradients in another order, so the two runs agree to float rounding, not
    bit for bit: every logged loss to 6 digits, and after 12 Adam steps at lr 3e-3 (each moving a weight by up to
    ~3e-3) every weight to 1e-4."""
    ckpt = tmp_path / "ckpt"
    cmd = stage1_cmd(tiny_recipe, train_shards, ckpt, "dist.gather=module")
    assert launch.run(cmd, tmp_path / "log.txt", timeout=300) == 0, (tmp_path / "log.txt").read_text()[-4000:]
    assert "ZeRO-3 gathers per block" not in (tmp_path / "log.txt").read_text()

    def losses(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [row[TRAIN_LOSS] for row in rows if TRAIN_LOSS in row]

    assert len(losses(stage1)) == STEPS // 2  # log_every=2
    assert losses(ckpt) == pytest.approx(losses(stage1), rel=1e-6)
    block, module = consolidated(stage1), consolidated(ckpt)
    assert block.keys() == module.keys()
    for key in block:
        torch.testing.assert_close(module[key], block[key], rtol=0, atol=1e-4, msg=key)
