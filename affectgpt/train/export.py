"""Checkpoint -> model directory: consolidate the sharded weights into one fp32 state dict, rebuild the
model from the recipe stored in the checkpoint, and write it with ``AffectGPT.save_pretrained``. A LoRA run's
adapters are merged into the LLM's weights, so every export has the same layout and loads the same way.

The directory also gets ``provenance.json`` (checkpoint, step, MLflow run id), so a run that starts from this
export (Stage 2 from Stage 1) can record the run it descends from."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from affectgpt.train.checkpoint import (
    BEST,
    MANIFEST,
    PROVENANCE,
    CheckpointError,
    CheckpointInfo,
    find_resumable,
    read_pointer,
    validate,
)

log = logging.getLogger(__name__)


def resolve(checkpoint: Path, best: bool = False) -> CheckpointInfo:
    """A step dir is validated as is; a run dir resolves to its newest usable checkpoint, or with ``best`` to
    the one its ``best`` pointer names (the best validation step of a run with ``eval.shards``)."""
    if best:
        tag_dir = read_pointer(checkpoint, BEST)
        if tag_dir is None:
            raise CheckpointError(f"{checkpoint} has no '{BEST}' pointer: the run did not evaluate on a validation "
                                  "split (set eval.shards) or has not evaluated yet")
        return validate(tag_dir)
    if (checkpoint / MANIFEST).exists():
        return validate(checkpoint)
    info = find_resumable(checkpoint)
    if info is None:
        raise CheckpointError(f"{checkpoint} holds no checkpoint (neither a step_* dir nor a run dir)")
    return info


def consolidated_state_dict(info: CheckpointInfo) -> dict[str, torch.Tensor]:
    """Full fp32 weights, frozen encoders included (ZeRO stores those apart from the optimizer's).

    ``info`` must come from ``validate``/``resolve``: the files' digests are checked before anything here
    unpickles them. The DDP file is read weights-only; DeepSpeed's ZeRO consolidation unpickles fully (it has
    no weights-only mode), which is why checkpoints are trusted input (README, "Checkpoints are trusted input").
    """
    if info.meta["strategy"] == "ddp":
        state = torch.load(info.path / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=True)
        return {k: v.float() if v.is_floating_point() else v for k, v in state["module"].items()}
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(info.path.parent), tag=info.tag)


def export(checkpoint: Path, out: Path, best: bool = False) -> CheckpointInfo:
    from dataclasses import replace

    from affectgpt.config import from_dict
    from affectgpt.model import AffectGPT, AffectGPTConfig
    from affectgpt.model.lora import LoraConfig, add_lora

    info = resolve(checkpoint, best)
    state = consolidated_state_dict(info)
    # The LLM's own weights are about to be replaced: a random init skips reading them.
    recipe = replace(from_dict(AffectGPTConfig, info.meta["model_config"]), llm_init="random")
    model = AffectGPT.from_config(recipe)
    train = info.meta.get("train_config", {})
    # A LoRA run's checkpoint holds the LLM with its adapters: rebuild that structure to load it, then merge.
    tuner = add_lora(model.llm, from_dict(LoraConfig, train.get("lora") or {}, "lora")) \
        if train.get("finetune") == "lora" else None
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{info.path} does not match its recipe: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(f"{info.path}: {name} has shape {tuple(tensor.shape)}, "
                             f"the recipe {tuple(expected[name].shape)}")
    # load_state_dict (rather than passing ``state`` to save_pretrained) keeps tied tensors one tensor.
    model.load_state_dict(state)
    if tuner is not None:
        tuner.merge_and_unload()  # the exported LLM is plain transformers, the adapters folded into its weights
    model.save_pretrained(out)
    provenance = {"checkpoint": str(info.path), "step": info.step, "tracking_run_id": info.meta.get("tracking_run_id"),
                  "selection": _selection(info) if best else "last"}
    (out / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return info


def _selection(info: CheckpointInfo) -> str:
    metric = info.meta.get("train_config", {}).get("eval", {}).get("metric", "?")
    return f"best-val:{metric}"


def parent_run_id(model_dir: Path) -> str | None:
    """The MLflow run that trained an exported model, if it was tracked."""
    path = model_dir / PROVENANCE
    return json.loads(path.read_text(encoding="utf-8")).get("tracking_run_id") if path.is_file() else None
