"""Distributed mechanics under the real ``deepspeed`` launcher (2 CPU ranks, ZeRO-3) with a tiny model:
loss falls, kill -9 + rerun is bit-identical, SIGTERM checkpoints, damaged checkpoints fall back, and a
world-size change is refused with the command that fixes it."""

from __future__ import annotations

import json
import shutil
import signal

import pytest
import torch

from . import ds_launch as launch

pytestmark = pytest.mark.integration

JOB = "tests/train/tiny_job.py"
STEPS = 40


def config(tmp_path, ckpt, **extra):
    data = {
        "model": {"recipe": "unused.yaml"},
        "global_batch_size": 8,
        "micro_batch_size": 2,
        "max_steps": STEPS,
        "log_every": 5,
        "optim": {"lr": 0.01, "warmup_steps": 3},
        "checkpoint": {"dir": str(ckpt), "every": 10, "keep_last": 3},
        **extra,
    }
    return launch.write_config(tmp_path / f"{ckpt.name}.yaml", data)


def final_weights(ckpt, step=STEPS):
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag=f"step_{step:08d}")


def losses(ckpt):
    lines = (ckpt / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["train/loss"] for r in map(json.loads, lines) if "train/loss" in r}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    ckpt = tmp / "ckpt"
    rc = launch.run(launch.deepspeed_cmd(JOB, config(tmp, ckpt)), tmp / "log.txt")
    assert rc == 0, (tmp / "log.txt").read_text()[-3000:]
    return ckpt


def test_loss_falls(uninterrupted):
    by_step = losses(uninterrupted)
    assert by_step[STEPS] < 0.5 * by_step[5], by_step


def test_kill9_then_rerun_gives_identical_weights(uninterrupted, tmp_path):
    ckpt = tmp_path / "ckpt"
    cmd = launch.deepspeed_cmd(JOB, config(tmp_path, ckpt))
    proc = launch.start(cmd, tmp_path / "log1.txt")
    launch.wait_for(lambda: (ckpt / "latest").exists(), timeout=120, proc=proc)
    launch.kill_tree(proc, signal.SIGKILL)
    killed_at = (ckpt / "latest").read_text().strip()
    assert killed_at != f"step_{STEPS:08d}", "the run finished before it could be killed"

    assert launch.run(cmd, tmp_path / "log2.txt") == 0, (tmp_path / "log2.txt").read_text()[-3000:]
    assert f"resuming from {ckpt / killed_at}" in (tmp_path / "log2.txt").read_text()
    want, got = final_weights(uninterrupted), final_weights(ckpt)
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name


def test_sigterm_writes_checkpoint_and_exits(tmp_path):
    ckpt = tmp_path / "ckpt"
    cfg = config(tmp_path, ckpt, max_steps=100000, checkpoint={"dir": str(ckpt), "every": 100000})
    proc = launch.start(launch.deepspeed_cmd(JOB, cfg), tmp_path / "log.txt")
    launch.wait_for(lambda: "step 5 train/loss" in (tmp_path / "log.txt").read_text(), timeout=120, proc=proc)
    launch.kill_tree(proc, signal.SIGTERM)
    proc.wait(timeout=60)
    log = (tmp_path / "log.txt").read_text()
    assert "received SIGTERM" in log, log[-3000:]
    tag = (ckpt / "latest").read_text().strip()
    manifest = json.loads((ckpt / tag / "manifest.json").read_text())
    assert 5 <= manifest["step"] < 100000


def test_damaged_latest_is_rejected_and_previous_used(uninterrupted, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(uninterrupted, ckpt)
    (ckpt / f"step_{STEPS:08d}" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    cfg = config(tmp_path, ckpt, max_steps=STEPS + 10)
    assert launch.run(launch.deepspeed_cmd(JOB, cfg), tmp_path / "log.txt") == 0
    log = (tmp_path / "log.txt").read_text()
    assert "zero_pp_rank_1_mp_rank_00_optim_states.pt listed in manifest.json is missing" in log, log[-3000:]
    assert f"resuming from {ckpt / f'step_{STEPS - 10:08d}'}" in log
    assert json.loads((ckpt / f"step_{STEPS + 10:08d}" / "manifest.json").read_text())["step"] == STEPS + 10


def test_other_world_size_is_refused_with_the_fix(uninterrupted, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(uninterrupted, ckpt)
    cfg = config(tmp_path, ckpt, max_steps=STEPS + 10, global_batch_size=8)
    rc = launch.run(launch.deepspeed_cmd(JOB, cfg, ranks=1), tmp_path / "log.txt")
    log = (tmp_path / "log.txt").read_text()
    assert rc != 0
    assert "written by 2 ranks with zero3; this job has 1 ranks" in log, log[-3000:]
    assert f"deepspeed.checkpoint.ds_to_universal --input_folder {ckpt / f'step_{STEPS:08d}'}" in log
