"""The training variants a GPU run takes, under the real launcher (2 ZeRO-3 ranks): LoRA (``finetune=lora``),
bf16 (``dist.precision=bf16``, slow on this CPU, so the runs are short) and packed micro-batches through the
shard loader, cut into rows by a token budget (``data.max_tokens_per_batch``). Each trains, resumes
bit-exactly after kill -9, and exports; a LoRA export's LLM loads with plain transformers, its adapters
merged."""

from __future__ import annotations

import json

import pytest
import torch

from affectgpt.run_metrics import TRAIN_ROWS_PER_STEP

from . import ds_launch as launch
from .ds_launch import consolidated, stage1_cmd

pytestmark = pytest.mark.integration

STEPS = 6
# 235 tokens holds some pairs of the test corpus's samples (95 to 130 tokens) and not others, so micro-batches
# of 2 take 1 or 2 rows, and the ranks differ at some steps.
VARIANTS = {"lora": ["finetune=lora", "lora.r=4"], "bf16": ["dist.precision=bf16"],
            "packed-budget": ["data.packed=true", "data.max_tokens_per_batch=235", "micro_batch_size=2"]}


def variant_cmd(name: str, tiny_recipe, train_shards, ckpt):
    return stage1_cmd(tiny_recipe, train_shards, ckpt, *VARIANTS[name], f"max_steps={STEPS}", "checkpoint.every=2")


@pytest.fixture(scope="module", params=list(VARIANTS))
def uninterrupted(request, tiny_recipe, train_shards, tmp_path_factory):
    """(variant, checkpoint dir of an uninterrupted run)."""
    tmp = tmp_path_factory.mktemp(request.param)
    ckpt = tmp / "ckpt"
    cmd = variant_cmd(request.param, tiny_recipe, train_shards, ckpt)
    assert launch.run(cmd, tmp / "log.txt", timeout=300) == 0, (tmp / "log.txt").read_text()[-4000:]
    return request.param, ckpt


def test_kill9_then_rerun_gives_identical_weights(uninterrupted, tiny_recipe, train_shards, tmp_path):
    name, reference = uninterrupted
    ckpt = tmp_path / "ckpt"
    launch.kill9_and_resume(variant_cmd(name, tiny_recipe, train_shards, ckpt), ckpt, tmp_path, STEPS)
    want, got = consolidated(reference, STEPS), consolidated(ckpt, STEPS)
    assert want.keys() == got.keys()
    different = [key for key in want if not torch.equal(want[key], got[key])]
    assert not different, different[:5]
    manifest = json.loads((ckpt / f"step_{STEPS:08d}" / "manifest.json").read_text())
    assert manifest["precision"] == ("bf16" if name == "bf16" else "fp32")
    if name == "lora":
        assert any("lora_A" in key for key in want)
    if name == "packed-budget":  # the budget did cut micro-batches (2 ranks x 1 micro-batch: 2 rows unless cut)
        metrics = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
        assert max(m.get(TRAIN_ROWS_PER_STEP, 0) for m in metrics) > 2


def test_export_loads_and_lora_is_merged(uninterrupted, tmp_path):
    from transformers import AutoModelForCausalLM

    from affectgpt.cli import main
    from affectgpt.model import AffectGPT

    name, ckpt = uninterrupted
    out = tmp_path / "model"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    model = AffectGPT.from_pretrained(out)
    llm = AutoModelForCausalLM.from_pretrained(out / "llm")
    assert not any("lora" in key for key in llm.state_dict())
    trained = consolidated(ckpt, STEPS)
    if name == "lora":
        # merged = base + (alpha / r) * B @ A, for one projection of the first layer
        prefix = "llm.model.layers.0.self_attn.q_proj."
        scale = 32 / 4
        merged = trained[prefix + "base_layer.weight"] + scale * (
            trained[prefix + "lora_B.default.weight"] @ trained[prefix + "lora_A.default.weight"])
        torch.testing.assert_close(llm.model.layers[0].self_attn.q_proj.weight, merged, rtol=1e-5, atol=1e-6)
        assert not torch.equal(merged, trained[prefix + "base_layer.weight"])  # the adapters did learn
    else:
        key = "llm.model.layers.0.self_attn.q_proj.weight"
        torch.testing.assert_close(model.state_dict()[key], trained[key].float())
