"""The loss is the token mean over the whole global batch: two optimizer steps of the real loop on the same 8
samples give the same losses, gradient norms and weights with 1 rank x 4 accumulation steps, 2 ranks x 2,
2 ranks x 2 packed, and 2 ranks x 1 micro-batch of 4 packed under a token budget (each rank's micro-batch cut
into rows, as many on both ranks) (ZeRO-3, the budgeted layout under ZeRO-2 too; fp32, through the deepspeed
launcher)."""

from __future__ import annotations

import json

import pytest
import torch

from affectgpt.run_metrics import TRAIN_GRAD_NORM, TRAIN_LOSS, TRAIN_ROWS_PER_STEP

from . import ds_launch as launch
from .ds_launch import ROOT, consolidated

pytestmark = pytest.mark.integration

# The fixed global batch's token counts on the test corpus: rank 0 (130, 106, 109, 116), rank 1 (116, 120, 109,
# 110). 215 cuts rank 0's micro-batch into 3 rows (106 + 109 fills one exactly) and rank 1's into 4; rank 0 then
# makes 4 to match.
BUDGET = 215
LAYOUTS = {
    "1 rank x 4": (1, ["micro_batch_size=2", "data.packed=false"]),
    "2 ranks x 2": (2, ["micro_batch_size=2", "data.packed=false"]),
    "2 ranks x 2 packed": (2, ["micro_batch_size=2", "data.packed=true"]),
    "2 ranks x 1 x 4 packed, budget": (2, ["micro_batch_size=4", "data.packed=true",
                                           f"data.max_tokens_per_batch={BUDGET}"]),
    # ZeRO-2 reduces gradients at a backward it takes for the accumulation boundary: rows must not look like one.
    "2 ranks x 1 x 4 packed, budget, zero2": (2, ["micro_batch_size=4", "data.packed=true",
                                                  f"data.max_tokens_per_batch={BUDGET}", "dist.strategy=zero2"]),
}


@pytest.fixture(scope="module")
def steps(tiny_recipe, train_shards, tmp_path_factory) -> dict[str, tuple[list[dict], list[dict]]]:
    """Per layout: (metrics of steps 1 and 2, weights after steps 1 and 2)."""
    out = {}
    for name, (ranks, layout) in LAYOUTS.items():
        tmp = tmp_path_factory.mktemp("global-batch")
        ckpt = tmp / "ckpt"
        # eps=1 makes Adam's first update ~ lr * g (instead of lr * sign(g)), and no clipping: the updated
        # weights then carry the gradient itself, scale included.
        cmd = launch.deepspeed_cmd(
            "tests/train/global_batch_check.py", ROOT / "configs" / "stage1.yaml",
            f"model.recipe={tiny_recipe}", f"data.shards={train_shards['coarse']}", f"checkpoint.dir={ckpt}",
            "max_steps=2", "checkpoint.every=1", "log_every=1", "global_batch_size=8", *layout,
            "optim.warmup_steps=0", "optim.lr=0.1", "optim.eps=1.0", "optim.grad_clip=0", ranks=ranks)
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


def test_the_budget_cut_the_micro_batches_into_rows(steps):
    """The budgeted layout is not one row per micro-batch in disguise: each rank ran its micro-batch as 4 rows
    at both steps (BUDGET: rank 1 needs 4, rank 0 3 and matches)."""
    for name in ("2 ranks x 1 x 4 packed, budget", "2 ranks x 1 x 4 packed, budget, zero2"):
        metrics, _ = steps[name]
        assert [m[TRAIN_ROWS_PER_STEP] for m in metrics] == [8, 8]
