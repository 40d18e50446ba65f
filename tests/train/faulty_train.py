"""``launcher/train.py`` with a fault injected into the training step, run by ``deepspeed`` in the crash tests.

  deepspeed --num_gpus 2 tests/train/faulty_train.py --fail-after 3 [--fail-rank 1] --config ... [key=value ...]

The model's forward pass raises RuntimeError after ``--fail-after`` micro-batches (the loader's workers are
running by then, an epoch half read), on ``--fail-rank`` only or on every rank. Everything else is the real
training job.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch

from affectgpt.config import load_config
from affectgpt.train.components import AffectGPTJob
from affectgpt.train.config import TrainConfig
from affectgpt.train.session import run


class FaultyJob(AffectGPTJob):
    def __init__(self, cfg: TrainConfig, after: int, rank: int | None):
        super().__init__(cfg)
        self.after, self.fail_rank = after, rank

    def build_model(self, ds_config: dict[str, Any]) -> torch.nn.Module:
        model = super().build_model(ds_config)
        rank = int(os.environ["RANK"])
        if self.fail_rank in (None, rank):
            calls = [0]

            def fail(module: torch.nn.Module, args: Any) -> None:
                calls[0] += 1
                if calls[0] > self.after:
                    raise RuntimeError(f"injected failure after {self.after} batches on rank {rank}")

            model.register_forward_pre_hook(fail)
        return model


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--fail-after", type=int, required=True)
    p.add_argument("--fail-rank", type=int)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--local_rank", type=int, default=-1)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [rank {os.environ.get('RANK')}] %(message)s")
    cfg = load_config(TrainConfig, args.config, args.overrides)
    return run(cfg, FaultyJob(cfg, args.fail_after, args.fail_rank))


if __name__ == "__main__":
    sys.exit(main())
