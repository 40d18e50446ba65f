"""Learning-rate schedule: linear warmup from 0, then cosine decay to ``min_lr_ratio * lr`` at ``max_steps``."""

from __future__ import annotations

import math

import torch


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak lr for the update made at optimizer step ``step`` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupCosine(torch.optim.lr_scheduler.LRScheduler):
    """Warmup + cosine as a scheduler object, so DeepSpeed saves and restores its position with a checkpoint
    (its state is plain numbers: no lambdas to pickle)."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, max_steps: int, min_lr_ratio: float):
        self.warmup_steps, self.max_steps, self.min_lr_ratio = warmup_steps, max_steps, min_lr_ratio
        super().__init__(optimizer)

    def state_dict(self) -> dict:
        # The position is state; the shape of the schedule is config: a resumed run with a longer max_steps
        # follows the new schedule instead of the one frozen into the checkpoint.
        return {k: v for k, v in super().state_dict().items() if k not in ("warmup_steps", "max_steps", "min_lr_ratio")}

    def get_lr(self) -> list[float]:
        factor = lr_factor(self.last_epoch, self.warmup_steps, self.max_steps, self.min_lr_ratio)
        return [base * factor for base in self.base_lrs]
