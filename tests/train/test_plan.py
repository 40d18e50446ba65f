"""The capacity planner (`affectgpt plan`): its FLOPs are the trainer's counter on the real model, its memory
model follows DeepSpeed's bytes, and the command prints the table and the JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from affectgpt.config import load_config
from affectgpt.model import AffectGPT, AffectGPTConfig
from affectgpt.train.plan import measure, model_state_bytes

from . import ds_launch as launch


def one_sample(cfg: AffectGPTConfig) -> dict:
    rng = np.random.default_rng(0)
    return {"name": "s", "frames": rng.integers(0, 256, (cfg.num_frames, 32, 32, 3), dtype=np.uint8),
            # a clip as long as the audio window, as the planner assumes: a shorter one skips the dead frames' mel
            "audio": rng.standard_normal(int(cfg.sample_rate * cfg.max_audio_seconds)).astype(np.float32) * 0.1,
            "has_audio": True,
            "subtitle": "I did not expect this at all.", "description": "The voice rises: surprise.",
            "labels": ["surprise"], "split": "coarse"}


def test_flops_per_sample_are_the_trainers_count(tiny_recipe):
    """The meta-device trace counts what the trainer's counter counts on the real model for a real collated
    sample (the LM head on the description's targets only) when attention takes SDPA's math path, as on meta.
    (In training torch's FlopCounterMode has no formula for the CPU flash-attention kernel, nor for the flash-attn
    package's, so the trainer's count leaves attention out there.)"""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from affectgpt.train.session import target_tokens

    cfg = load_config(AffectGPTConfig, tiny_recipe)
    model = AffectGPT.from_config(cfg).train()
    batch = model.collator(train=True)([one_sample(cfg)])
    seq, targets = batch["input_ids"].shape[1], target_tokens(batch)
    assert 0 < targets < seq / 2
    with FlopCounterMode(display=False) as real, sdpa_kernel(SDPBackend.MATH):
        model(**batch).loss.backward()
    facts = measure(cfg, seq, targets)
    assert facts.flops == real.get_total_flops()
    # Each more target costs the head's matmul once forward and twice backward (input and weight gradients).
    text = model.llm.config.get_text_config()
    head = 3 * 2 * text.hidden_size * text.vocab_size
    assert measure(cfg, seq, targets + 5).flops - facts.flops == 5 * head
    assert measure(cfg, seq).flops > facts.flops  # the default: the longest description
    assert facts.flops_checkpointed > facts.flops
    assert facts.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert facts.frozen == sum(p.numel() for p in model.parameters() if not p.requires_grad)


def test_model_state_bytes_per_parameter():
    """fp32 (as measured on CPU, launcher/README.md): DDP 16 B, ZeRO-2 4 + 16/N, ZeRO-3 20/N; frozen 4 B apart."""
    assert model_state_bytes("ddp", 1000, 0, 4, 2) == 16_000
    assert model_state_bytes("zero2", 1000, 0, 4, 2) == 12_000
    assert model_state_bytes("zero3", 1000, 0, 4, 2) == 10_000
    assert model_state_bytes("zero3", 0, 1000, 4, 2) == 2_000
    assert model_state_bytes("zero2", 0, 1000, 4, 2) == 4_000
    # bf16: the fp32 master and the fp32 gradient of the step come on top of the 2-byte parameter and gradient.
    assert model_state_bytes("zero3", 1000, 0, 2, 8) == 1000 * 20 / 8
    assert model_state_bytes("ddp", 1000, 0, 2, 8) == 20_000


def test_paper_recipe_plan_on_eight_gpus():
    """Qwen2.5-1.5B with the paper's encoders (the 7B traces the same way, just slower): ZeRO-3 needs the least
    memory, DDP the most; DeepSpeed's own estimate is close; the shards feed every reader evenly."""
    recipe = launch.ROOT / "configs" / "models" / "qwen2.5-1.5b.yaml"
    cmd = [sys.executable, "-m", "affectgpt.cli", "plan", "--recipe", str(recipe), "--gpus", "8", "--json"]
    out = subprocess.run(cmd, cwd=launch.ROOT, capture_output=True, text=True, timeout=600, env=launch.env())
    assert out.returncode == 0, out.stderr[-3000:]
    plan = json.loads(out.stdout)
    s = plan["strategies"]
    assert s["zero3"]["model_states_gb"] < s["zero2"]["model_states_gb"] < s["ddp"]["model_states_gb"]
    for strategy in s.values():
        assert strategy["checkpointed"]["max_micro_batch"] >= strategy["plain"]["max_micro_batch"]
    assert plan["params"]["components"]["llm"]["params"] == 1_543_714_304
    ours = s["zero3"]["model_states_gb"] + s["zero3"]["zero3_live_params_gb"]
    assert 0.8 < ours / plan["deepspeed_zero3_estimate_gb"] < 1.25
    assert "too few shards" not in plan["data"]["advice"]
    assert plan["data"]["epoch"]["min_rank_batches"] == plan["data"]["epoch"]["max_rank_batches"]


def test_plan_reads_its_settings_as_every_entry_point_does(tmp_path):
    """``affectgpt plan``: --config FILE, flags generated from PlanConfig (--gpu-mem sets gpu_mem_gb), then
    key=value overrides; later wins. --json is the one flag that is not a setting."""
    import argparse

    from affectgpt.cli import build_parser
    from affectgpt.config import config_from_args
    from affectgpt.train.plan import PlanConfig

    parser = build_parser()
    plan = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["plan"]
    text = " ".join(plan.format_help().split())
    for shown in ("--config FILE", "--gpu-mem GPU_MEM GB of memory of one GPU", "--global-batch GLOBAL_BATCH",
                  "key=value", "--json"):
        assert shown in text, (shown, text)
    config = tmp_path / "plan.yaml"
    config.write_text("gpus: 4\nnodes: 2\nmfu: 0.3\n", encoding="utf-8")
    args = parser.parse_args(["plan", "--config", str(config), "--gpu-mem", "141", "--nodes", "3", "--json",
                              "peak_tflops=312", "nodes=5"])
    assert config_from_args(PlanConfig, args) == PlanConfig(gpus=4, nodes=5, mfu=0.3, gpu_mem_gb=141.0,
                                                            peak_tflops=312.0)
    assert args.json
