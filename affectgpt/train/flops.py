"""FLOP accounting for MFU: the measured matmul peak of this device, and the FLOPs a step really executes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode

T = TypeVar("T")


def matmul_peak_flops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                      size: int | None = None, min_seconds: float = 0.3) -> float:
    """FLOP/s of a square matmul on ``device``: the achievable peak MFU is quoted against.

    Measured rather than taken from a spec sheet, with the threads this process really has, so on a shared
    CPU the figure reflects what each rank can get. ``size`` None: 8192 on a GPU (smaller products leave an
    H100/H200's tensor cores partly idle and would overstate MFU), 2048 on a CPU.
    """
    if size is None:
        size = 8192 if torch.device(device).type == "cuda" else 2048
    # A private generator: measuring must not move the global RNG that training draws from.
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    a @ b  # warm-up: thread pools, kernels
    sync()
    runs, start = 0, time.perf_counter()
    while True:
        a @ b
        runs += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return 2 * size**3 * runs / elapsed


def count_flops(fn: Callable[[], T]) -> tuple[T, int]:
    """``fn()`` and the FLOPs it executed (matmuls, convolutions, attention; forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, counter.get_total_flops()
