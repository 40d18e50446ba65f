"""Choosing the LLM's attention kernel.

``auto`` takes FlashAttention-2 on CUDA when ``flash_attn`` imports, else PyTorch SDPA. Asking for
``flash_attention_2`` where it cannot run is an error, never a silent fallback: a run that was sized for FA2's
memory and packing behaviour should not quietly become a different run.
"""

from __future__ import annotations

import importlib.util

import torch


class AttentionBackendError(RuntimeError):
    """The requested attention implementation cannot run on this machine."""


def flash_attn_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


def resolve_attn_implementation(requested: str) -> str:
    """``auto | flash_attention_2 | sdpa | eager`` -> the implementation name transformers takes."""
    if requested == "auto":
        return "flash_attention_2" if flash_attn_available() else "sdpa"
    if requested == "flash_attention_2":
        if not torch.cuda.is_available():
            raise AttentionBackendError(
                "attn_implementation=flash_attention_2 needs a CUDA GPU and this machine has none; "
                "use attn_implementation=sdpa (or auto)"
            )
        if importlib.util.find_spec("flash_attn") is None:
            raise AttentionBackendError(
                "attn_implementation=flash_attention_2 needs the flash_attn package: pip install '.[gpu]' "
                "(or use attn_implementation=sdpa)"
            )
    return requested
