"""Plan a training run before renting it: exact parameter counts of a recipe (built on the meta device, from the
shipped architecture configs: offline, no weights), memory per GPU under ZeRO-3 / ZeRO-2 / DDP with and without
activation checkpointing, the largest micro-batch that fits, FLOPs per sample (the counter the trainer logs MFU
with), the projected Stage 1 wall time at a stated MFU, and whether the shards feed every loader reader.

Example: affectgpt plan --recipe configs/models/affectgpt-qwen2.5-7b.yaml --gpus 8
         affectgpt plan --recipe configs/models/llama3.1-8b.yaml --gpus 8 --nodes 4 --global-batch 256 --json
         affectgpt plan --config my-plan.yaml mfu=0.35 samples=500000
Flags set the keys of the same name (--gpu-mem is gpu_mem_gb, --global-batch global_batch); KEY=VALUE
overrides win over both. Keys: see affectgpt/train/plan.py (PlanConfig). --gpus counts GPUs per node.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

HELP = "plan a training run: parameters, memory per GPU, micro-batch, FLOPs, wall time, shard layout"
log = logging.getLogger(__name__)

FLAGS = {"recipe": Path, "gpus": int, "nodes": int, "gpu_mem": float, "global_batch": int, "seq": int,
         "samples": int, "mfu": float}
KEYS = {"gpu_mem": "gpu_mem_gb"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="plan YAML with PlanConfig keys (optional)")
    p.add_argument("--recipe", type=Path, help="model recipe (default: configs/models/affectgpt-qwen2.5-7b.yaml)")
    p.add_argument("--gpus", type=int, help="GPUs per node (default: 8)")
    p.add_argument("--nodes", type=int, help="nodes (default: 1)")
    p.add_argument("--gpu-mem", type=float, help="GB of memory per GPU (default: 80)")
    p.add_argument("--global-batch", type=int, help="samples per optimizer step over all ranks (default: 128)")
    p.add_argument("--seq", type=int, help="tokens per sample (default: the recipe's longest sequence)")
    p.add_argument("--samples", type=int, help="Stage 1 corpus size (default: 115000, EMER-Coarse)")
    p.add_argument("--mfu", type=float, help="MFU the wall time assumes (default: 0.4)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="PlanConfig overrides, e.g. peak_tflops=312")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from affectgpt.config import ConfigError, load_config
    from affectgpt.model import AffectGPTConfig
    from affectgpt.train.plan import PlanConfig, build_plan, default_seq, measure, render

    flags = [f"{KEYS.get(k, k)}={getattr(args, k)}" for k in FLAGS if getattr(args, k) is not None]
    try:
        cfg = load_config(PlanConfig, args.config, flags + args.overrides)
        model_cfg = load_config(AffectGPTConfig, cfg.recipe)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    # The precision the GPUs train in decides the activations' bytes, whatever dtype the recipe loads in.
    model_cfg = dataclasses.replace(model_cfg, dtype="bfloat16" if cfg.precision == "bf16" else "float32")
    seq = cfg.seq or default_seq(model_cfg)
    log.info("tracing one training step of %s on the meta device (%d tokens)", cfg.recipe, seq)
    # stdout carries the plan alone (--json is for scripts): DeepSpeed prints its accelerator notice there.
    with contextlib.redirect_stdout(sys.stderr):
        plan = build_plan(cfg, measure(model_cfg, seq))
    print(json.dumps(plan, indent=1) if args.json else render(plan))
    return 0
