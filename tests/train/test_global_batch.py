"""The loss is the token mean over the whole global batch: two optimizer steps of the real loop on the same 8
samples give the same losses, gradient norms and weights with 1 rank x 4 accumulation steps, 2 ranks x 2, and
2 ranks x 2 packed (ZeRO-3, fp32, through the deepspeed launcher)."""

from __future__ import annotations

import json

import pytest
import torch

from affectgpt.run_metrics import TRAIN_GRAD_NORM, TRAIN_LOSS

from . import ds_launch as launch
from .ds_launch import ROOT, consolidated

pytestmark = pytest.mark.integration

LAYOUTS = {"1 rank x 4": (1, False), "2 ranks x 2": (2, False), "2 ranks x 2 packed": (2, True)}


@pytest.fixture(scope="module")
def steps(tiny_recipe, train_shards, tmp_path_factory) -> dict[str, tuple[list[dict], list[dict]]]:
    """Per layout: (metrics of steps 1 and 2, weights after steps 1 and 2)."""
    out = {}
    for name, (ranks, packed) in LAYOUTS.items():
        tmp = tmp_path_factory.mktemp("global-batch")
        ckpt = tmp / "ckpt"
        # eps=1 makes Adam's first update ~ lr * g (instead of lr * sign(g)), and no clipping: the updated
        # weights then carry the gradient itself, scale included.
        cmd = launch.deepspeed_cmd(
            "tests/train/global_batch_check.py", ROOT / "configs" / "stage1.yaml",
            f"model.recipe={tiny_recipe}", f"data.shards={train_shards['coarse']}", f"checkpoint.dir={ckpt}",
            "max_steps=2", "checkpoint.every=1", "log_every=1", "global_batch_size=8", "micro_batch_size=2",
            f"data.packed={packed}", "optim.warmup_steps=0", "optim.lr=0.1", "optim.eps=1.0", "optim.grad_clip=0",
            ranks=ranks)
        assert launch.run(cmd, tmp / "log.txt", timeout=300) == 0, (tmp / "log.txt").read_text()[-4000:]
        metrics = [json.loads(line) for line in (ckpt / "metrics.jsonl").read_text().splitlines()[:2]]
        out[name] = metrics, [consolidated(ckpt, step=s) for s in (1, 2)]
    return out


@pytest.mark.parametrize("name", [n for n in LAYOUTS if n != "1 rank x 4"])
def test_same_global_batch_same_steps(steps, name):
    (want_metrics, want), (got_metrics, got) = steps["1 rank x 4"], steps[name]
    for step in (0, 1):
        assert got_metrics[step][TRAIN_LOSS] == pytest.approx(want_metrics[step][TRAIN_LOSS], rel=1e-5)
        assert got_metrics[step][TRAIN_GRAD_NORM] == pytest.approx(want_metrics[step][TRAIN_GRAD_NORM], rel=1e-4)
        assert want[step].keys() == got[step].keys()
        for key in want[step]:
            torch.testing.assert_close(got[step][key], want[step][key], rtol=1e-4, atol=1e-5, msg=key)


def test_the_steps_moved_the_weights(steps):
    """The comparison is not vacuous: the second step moved the weights by far more than its tolerance."""
    _, (first, second) = steps["1 rank x 4"]
    moved = max(float((second[k] - first[k]).abs().max()) for k in first if first[k].is_floating_point())
    assert moved > 1e-3, moved  # 100 x the absolute tolerance
