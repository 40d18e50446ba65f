"""FLOP accounting for MFU: the measured matmul peak of this device, and the FLOPs a step really executes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode

T = TypeVar("T")
log = logging.getLogger(__name__)


def matmul_peak_flops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                      size: int | None = None, min_seconds: float = 0.3, enough_s: float = 0.05) -> float:
    """FLOP/s of a square matmul on ``device``: the achievable peak MFU is quoted against.

    Measured rather than taken from a spec sheet, with the threads this process really has, so on a shared
    CPU the figure reflects what each rank can get. ``size`` None: up to 8192 on a GPU (smaller products leave
    an H100/H200's tensor cores partly idle and would overstate MFU), up to 2048 on a CPU. The side doubles
    from 256 and stops once one product takes ``enough_s``: a dtype the device has no fast path for (bf16 on a
    CPU without AVX512-BF16 runs at 0.1-2 GFLOP/s) would otherwise spend minutes at start-up measuring it.
    """
    if size is None:
        size = 8192 if torch.device(device).type == "cuda" else 2048
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    # A private generator: measuring must not move the global RNG that training draws from.
    gen = torch.Generator(device=device).manual_seed(0)
    side = min(256, size)
    while True:
        a = torch.randn(side, side, device=device, dtype=dtype, generator=gen)
        b = torch.randn(side, side, device=device, dtype=dtype, generator=gen)
        a @ b  # warm-up: thread pools, kernels
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        if side >= size or time.perf_counter() - start >= enough_s:
            break
        side = min(2 * side, size)
    runs, start = 0, time.perf_counter()
    while True:
        a @ b
        runs += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            flops = 2 * side**3 * runs / elapsed
            log.debug("matmul peak %.3g FLOP/s (%s, side %d)", flops, dtype, side)
            return flops


def count_flops(fn: Callable[[], T]) -> tuple[T, int]:
    """``fn()`` and the FLOPs it executed (matmuls, convolutions, attention; forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, counter.get_total_flops()
