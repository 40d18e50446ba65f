"""DeepSpeed JSON templates with ``"auto"`` values, filled from the training config (as the HF integration
does), so batch sizes, clipping and precision are stated once, in the training YAML."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from affectgpt.train.config import TrainConfig

STRATEGY_STAGE = {"zero3": 3, "zero2": 2, "ddp": 0}
MIN_BUCKET = 1_000_000  # elements (4 MB in fp32): a tiny model's gradients reduce in one or two collectives
MIN_PERSISTENCE = 100_000  # elements: DeepSpeed's default stage3_param_persistence_threshold
TEMPLATE_DIR = Path(__file__).resolve().parent / "deepspeed"  # package data: {zero3,zero2,ddp}.json


def template_path(cfg: TrainConfig) -> Path:
    return cfg.dist.deepspeed_config or TEMPLATE_DIR / f"{cfg.dist.strategy}.json"


def load_template(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"DeepSpeed config {path} does not exist (set dist.deepspeed_config)")
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def fill(
    template: dict[str, Any],
    cfg: TrainConfig,
    *,
    world_size: int,
    bf16: bool,
    hidden_size: int,
    source: str = "template",
) -> dict[str, Any]:
    """Return a copy of ``template`` with every ``"auto"`` replaced; unknown ``"auto"`` keys are an error."""
    gas = cfg.accumulation_steps(world_size)
    values = {
        "train_batch_size": cfg.global_batch_size,
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": gas,
        "gradient_clipping": cfg.optim.grad_clip,
        "bf16.enabled": bf16,
        # Bucket sizes scale with the hidden size as in transformers' DeepSpeed integration, with floors: below
        # them (hidden 64 gives 4k-element buckets) a step is hundreds of tiny collectives and ZeRO-3 hook calls,
        # and parameters smaller than DeepSpeed's own default threshold stay whole on every rank. Models with a
        # hidden size of 1000 or more are above the floors and unaffected.
        "zero_optimization.reduce_bucket_size": max(hidden_size * hidden_size, MIN_BUCKET),
        "zero_optimization.allgather_bucket_size": max(hidden_size * hidden_size, MIN_BUCKET),
        "zero_optimization.stage3_prefetch_bucket_size": max(int(0.9 * hidden_size * hidden_size), MIN_BUCKET),
        "zero_optimization.stage3_param_persistence_threshold": max(10 * hidden_size, MIN_PERSISTENCE),
    }
    out = copy.deepcopy(template)
    _replace_auto(out, values, "", source)
    stage = out.get("zero_optimization", {}).get("stage", 0)
    if stage != STRATEGY_STAGE[cfg.dist.strategy]:
        raise ValueError(
            f"{source}: zero_optimization.stage={stage} but dist.strategy={cfg.dist.strategy} "
            f"means stage {STRATEGY_STAGE[cfg.dist.strategy]}"
        )
    for key, want in (("train_batch_size", cfg.global_batch_size), ("train_micro_batch_size_per_gpu",
                                                                     cfg.micro_batch_size)):
        if out.get(key) != want:
            raise ValueError(f"{source}: {key}={out.get(key)} contradicts the training config ({want}); use \"auto\"")
    return out


def _replace_auto(node: dict[str, Any], values: dict[str, Any], prefix: str, source: str) -> None:
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            _replace_auto(value, values, f"{path}.", source)
        elif value == "auto":
            if path not in values:
                raise ValueError(f"{source}: no rule fills \"auto\" at {path}; give it a value")
            node[key] = values[path]
