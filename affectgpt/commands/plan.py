"""Plan a training run before renting it: exact parameter counts of a recipe (built on the meta device, from the
shipped architecture configs: offline, no weights), memory per GPU under ZeRO-3 / ZeRO-2 / DDP with and without
activation checkpointing, the largest micro-batch that fits, FLOPs per sample (the counter the trainer logs MFU
with), the projected Stage 1 wall time at a stated MFU, and whether the shards feed every loader reader.

Settings come from --config FILE (YAML, PlanConfig's keys), the flags, then key=value overrides (e.g.
peak_tflops=312 headroom=0.15); later wins. --gpus counts GPUs per node.

Example: affectgpt plan --recipe configs/models/affectgpt-qwen2.5-7b.yaml --gpus 8
         affectgpt plan --recipe configs/models/llama3.1-8b.yaml --gpus 8 --nodes 4 --global-batch 256 --json
         affectgpt plan --config my-plan.yaml mfu=0.35 samples=500000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys

from affectgpt.config import add_config_arguments
from affectgpt.train.plan import PlanConfig

HELP = "plan a training run: parameters, memory per GPU, micro-batch, FLOPs, wall time, shard layout"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, PlanConfig)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from affectgpt.config import ConfigError, config_from_args, load_config
    from affectgpt.model import AffectGPTConfig
    from affectgpt.train.plan import build_plan, default_seq, measure, render

    try:
        cfg = config_from_args(PlanConfig, args)
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
