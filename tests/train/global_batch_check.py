"""Run by test_global_batch.py under the ``deepspeed`` launcher: one optimizer step of the real training loop
(``affectgpt.train.session.run`` with the real AffectGPT job) on a FIXED global batch, whatever the layout.

  deepspeed --num_gpus R tests/train/global_batch_check.py --config configs/stage1.yaml [key=value ...]

The global batch is the first ``global_batch_size`` samples of ``data.shards`` in the loader's order; rank r
takes the r-th contiguous share and cuts it into micro-batches, padded or packed (``data.packed``, and
``data.max_tokens_per_batch`` cuts those into rows in the loop). So 1 rank x 4 accumulation steps, 2 ranks x 2,
packed vs padded, with or without a token budget all see the same samples, and the step's loss, gradient norm
and updated weights must agree.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from affectgpt.config import load_config
from affectgpt.train.components import AffectGPTJob
from affectgpt.train.config import TrainConfig
from affectgpt.train.session import run


class FixedBatches:
    """This rank's micro-batches of the fixed global batch, every epoch; no position to save."""

    def __init__(self, micro_batches: list[dict[str, Any]]):
        self.micro_batches = micro_batches
        self.skipped: list[str] = []  # no corrupt samples to replace: the batches are fixed

    def __iter__(self):
        return iter(self.micro_batches)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def set_epoch(self, epoch: int) -> None:
        pass


class FixedBatchJob(AffectGPTJob):
    def batches(self, model, rank: int, world_size: int) -> FixedBatches:
        from shards.loader import ShardLoader

        cfg = self.cfg
        samples = next(iter(ShardLoader(str(cfg.data.shards), cfg.global_batch_size, seed=cfg.data.seed)))
        share = samples[rank * len(samples) // world_size:(rank + 1) * len(samples) // world_size]
        collate = self.collator(model)
        micro = cfg.micro_batch_size
        return FixedBatches([collate(share[i:i + micro]) for i in range(0, len(share), micro)])

    def facts(self, model, batches) -> dict[str, Any]:
        return {}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--local_rank", type=int, default=-1)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"[rank {os.environ.get('RANK', '0')}] %(name)s: %(message)s")
    cfg = load_config(TrainConfig, args.config, args.overrides)
    return run(cfg, FixedBatchJob(cfg))


if __name__ == "__main__":
    sys.exit(main())
