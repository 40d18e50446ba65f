"""Evaluation during training: every rank describes its share of the validation samples, rank 0 scores them.

Under ZeRO-3 each forward pass gathers parameters from every rank, so all ranks generate together: each holds
the same number of samples (the last rank's share is padded with a repeat that is thrown away) and generation
runs with ``synced_gpus`` until every rank has finished its sequences. Scoring is ``affectgpt eval``'s
(``eval.generate.score_descriptions``), so the numbers mean the same as a standalone evaluation's.

Evaluation leaves training exactly as it found it: the model is back in train mode and every RNG is restored,
so a run with evaluation trains the same weights as one without.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch

from affectgpt.eval.extract import LexiconExtractor
from affectgpt.eval.generate import EvalConfig, score_descriptions
from affectgpt.run_metrics import EVAL_SECONDS, eval_metrics
from affectgpt.train import rng
from affectgpt.train.config import EvalSection

log = logging.getLogger(__name__)


class Validation:
    """One rank's share of the validation split, and the collective that evaluates a model on it."""

    def __init__(self, cfg: EvalSection, rank: int, world_size: int, dist: Any, synced: bool):
        from shards.loader import ShardLoader

        self.cfg, self.rank, self.world_size, self._dist, self._synced = cfg, rank, world_size, dist, synced
        samples: list[dict[str, Any]] = []
        # resampled=False on a single reader: every rank sees the same samples in the same order
        for batch in ShardLoader(str(cfg.shards), cfg.batch_size, resampled=False, seed=0):
            samples += batch
            if cfg.samples is not None and len(samples) >= cfg.samples:
                break
        samples = samples[: cfg.samples]
        if not samples:
            raise ValueError(f"eval.shards={cfg.shards} holds no sample")
        self.total = len(samples)
        share = math.ceil(self.total / world_size)
        mine = samples[rank * share : (rank + 1) * share]
        self.real = len(mine)  # the rest repeats a sample so that every rank runs as many batches
        self.samples = mine + [samples[-1]] * (share - len(mine))
        self.score_cfg = EvalConfig(**cfg.generation(), task=cfg.task, bootstrap=0)

    def run(self, model: torch.nn.Module) -> dict[str, float] | None:
        """Every rank calls this at the same step. Rank 0 gets the ``eval/*`` metrics; the others None."""
        start = time.perf_counter()
        state = rng.capture()
        model.eval()
        texts: list[str] = []
        try:
            with torch.no_grad():
                for i in range(0, len(self.samples), self.cfg.batch_size):
                    texts += model.generate(self.samples[i : i + self.cfg.batch_size],
                                            max_new_tokens=self.cfg.max_new_tokens,
                                            repetition_penalty=self.cfg.repetition_penalty,
                                            synced_gpus=self._synced)
        finally:
            model.train()
            rng.restore(state)
        mine = [(s["name"], t, s["description"], list(s["labels"]))
                for s, t in zip(self.samples[: self.real], texts, strict=False)]
        gathered: list[Any] = [None] * self.world_size
        self._dist.all_gather_object(gathered, mine)
        if self.rank != 0:
            return None
        rows = [row for part in gathered for row in part]
        names, generated = [r[0] for r in rows], [r[1] for r in rows]
        result, _ = score_descriptions(names, generated, [(r[2], r[3]) for r in rows], self.score_cfg,
                                       LexiconExtractor())
        values = eval_metrics(result["model"])
        values[EVAL_SECONDS] = time.perf_counter() - start
        log.info("validation: %d samples in %.1f s: %s", len(rows), values[EVAL_SECONDS],
                 " ".join(f"{k}={v:.4g}" for k, v in values.items() if k.count("/") == 1))
        return values
