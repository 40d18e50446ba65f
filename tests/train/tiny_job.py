"""A training job with a tiny model and an in-memory dataset, run under the real ``deepspeed`` launcher.

It exercises the distributed mechanics of ``affectgpt.train.session`` (ZeRO stages, checkpoints, resume,
preemption) in seconds, independently of the real model and shard loader.
Usage: deepspeed --num_gpus 2 tests/train/tiny_job.py --config CFG.yaml [key=value ...]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from affectgpt.config import load_config
from affectgpt.train.config import TrainConfig
from affectgpt.train.session import run

VOCAB, HIDDEN, SEQ = 32, 16, 8


class Tiny(nn.Module):
    """Embedding -> frozen linear -> MLP -> head tied to the embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.frozen = nn.Linear(HIDDEN, HIDDEN)
        self.frozen.requires_grad_(False)
        self.mlp = nn.Sequential(nn.Linear(HIDDEN, 4 * HIDDEN), nn.Tanh(), nn.Dropout(0.1), nn.Linear(4 * HIDDEN, HIDDEN))
        self.head = nn.Linear(HIDDEN, VOCAB, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> SimpleNamespace:
        logits = self.head(self.mlp(self.frozen(self.embed(x))))
        return SimpleNamespace(loss=nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()))


class TinyJob:
    hidden_size = HIDDEN

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    def build_model(self, ds_config: dict[str, Any]) -> nn.Module:
        import deepspeed

        with deepspeed.zero.Init(config_dict_or_path=ds_config, enabled=self.cfg.dist.strategy == "zero3"):
            return Tiny()

    def batches(self, model: nn.Module, rank: int, world_size: int) -> InMemoryBatches:
        return InMemoryBatches(rank, world_size, self.cfg.micro_batch_size, seed=self.cfg.data.seed)

    def describe(self) -> dict[str, Any]:
        return {"kind": "tiny"}

    def facts(self, model: nn.Module, batches: Any) -> dict[str, Any]:
        return {"model": "tiny"}

    def metrics(self, run_id: str | None, facts: dict[str, Any]) -> None:
        return None


class InMemoryBatches:
    """Epoch-sized, per-rank slice of a fixed dataset, reshuffled per epoch; state = (epoch, position)."""

    def __init__(self, rank: int, world: int, micro: int, num: int = 64, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, VOCAB, (num, SEQ), generator=g)
        self.x, self.y = x, (x * 3 + 1) % VOCAB
        self.rank, self.world, self.micro, self.seed = rank, world, micro, seed
        self.epoch, self.position = 0, 0

    def __iter__(self):
        while True:
            order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.seed + self.epoch))
            mine = order[self.rank :: self.world]
            batches = len(mine) // self.micro
            if self.position >= batches:
                self.epoch, self.position = self.epoch + 1, 0
                return
            idx = mine[self.position * self.micro : (self.position + 1) * self.micro]
            self.position += 1
            yield {"x": self.x[idx], "y": self.y[idx]}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--local_rank", type=int, default=-1)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(TrainConfig, args.config, args.overrides)
    return run(cfg, TinyJob(cfg))


if __name__ == "__main__":
    sys.exit(main())
