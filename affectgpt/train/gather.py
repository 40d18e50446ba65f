"""ZeRO-3's unit of gathering: whole transformer blocks (``dist.gather=block``) instead of every module.

DeepSpeed hooks every module: before its forward it gathers the module's own parameters, after it releases
them, and the same again around its backward. A transformer block is ~10 modules (attention projections, MLP,
norms), so a step runs ~10 hook pairs per block, each with its bookkeeping even when the parameters are
already whole (persistent). Marking the block as a ZeRO-3 leaf module makes DeepSpeed gather all of its
parameters in one hook and leave its inner modules alone: the granularity FSDP wraps at. The blocks are those
transformers itself keeps whole for device maps (each model's ``_no_split_modules``), so the rule holds for
every family and encoder without a list of class names here. The trade is memory: one block's parameters are
live at once, not one projection's (a 7-8B LLM's block is ~200-250 M parameters).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

import torch
from transformers import PreTrainedModel

log = logging.getLogger(__name__)


def block_classes(model: torch.nn.Module) -> set[str]:
    """Class names of the blocks of every transformers model inside ``model`` (LLM and encoders)."""
    names: set[str] = set()
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            names.update(module._no_split_modules or ())
    return names


def gather_per_block(model: torch.nn.Module) -> Counter[str]:
    """Mark every block of ``model`` as a ZeRO-3 leaf module (before ``deepspeed.initialize`` sets the hooks).

    Returns how many blocks of each class were marked; a block nested in a marked one is left as it is."""
    from deepspeed.utils import set_z3_leaf_module

    marked: Counter[str] = Counter()
    for module, block in gathered_units(model):
        if block:
            set_z3_leaf_module(module, True)
            marked[type(module).__name__] += 1
    log.info("ZeRO-3 gathers per block: %s", ", ".join(f"{n} x{k}" for n, k in sorted(marked.items())) or "none")
    return marked


def largest_gather(model: torch.nn.Module) -> int:
    """Parameters of the largest unit ZeRO-3 gathers whole under ``dist.gather=block``: a block with everything
    in it, or a module outside the blocks (an embedding, the LM head) with its own parameters."""
    return max(sum(p.numel() for p in module.parameters(recurse=block)) for module, block in gathered_units(model))


def gathered_units(model: torch.nn.Module) -> Iterator[tuple[torch.nn.Module, bool]]:
    """(module, is a block) for each unit of gathering: the blocks, and every module outside them."""
    wanted = block_classes(model)

    def visit(module: torch.nn.Module) -> Iterator[tuple[torch.nn.Module, bool]]:
        if type(module).__name__ in wanted:
            yield module, True
            return
        yield module, False
        for child in module.children():
            yield from visit(child)

    yield from visit(model)
