"""The real training job: AffectGPT from a recipe or an exported model, the shard loader, MLflow tracking."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from affectgpt.config import flatten, to_dict
from affectgpt.model import AffectGPT, AffectGPTConfig
from affectgpt.model.affectgpt import ADAPTER_FILE, CONFIG_FILE, load_recipe
from affectgpt.model.attention import resolve_attn_implementation
from affectgpt.model.lora import add_lora
from affectgpt.train.config import TrainConfig
from affectgpt.train.metrics import MetricsLogger

log = logging.getLogger(__name__)


def model_config(cfg: TrainConfig) -> AffectGPTConfig:
    """The model recipe this run builds: ``init.from_model``'s own recipe (its LLM and encoders are the
    weights to start from) or ``model.recipe``; ``model.set`` is merged over either."""
    if cfg.init.from_model is not None:
        path, base = cfg.init.from_model / CONFIG_FILE, cfg.init.from_model
    else:
        path, base = cfg.model.recipe, Path.cwd()
    try:
        return load_recipe(path, base, cfg.model.set)
    except ValueError as e:
        raise ValueError(f"{e} (with model.set {cfg.model.set})" if cfg.model.set else str(e)) from e


def loader_workers(workers: int | str, on_cuda: bool) -> int:
    """``data.workers``, with ``auto`` resolved for this rank's device (see ``DataSection.workers``)."""
    if workers != "auto":
        return int(workers)
    if not on_cuda:
        return 0
    cores_per_rank = len(os.sched_getaffinity(0)) // max(1, torch.cuda.device_count())
    return max(1, min(4, cores_per_rank - 1))


class AffectGPTJob:
    def __init__(self, cfg: TrainConfig):
        from transformers import AutoConfig

        self.cfg = cfg
        self.model_cfg = model_config(cfg)
        gguf = {"gguf_file": self.model_cfg.gguf_file} if self.model_cfg.gguf_file else {}
        self.hidden_size = AutoConfig.from_pretrained(self.model_cfg.llm, **gguf).get_text_config().hidden_size
        if cfg.finetune == "lora" and self.model_cfg.llm_init == "random":
            raise ValueError("finetune=lora freezes the LLM and llm_init=random makes it random: LoRA needs a "
                             "pretrained LLM (finetune=full trains a random one)")
        attention = resolve_attn_implementation(self.model_cfg.attn_implementation)
        # auto: packed with FlashAttention-2, or when a token budget asks for packed rows.
        self.packed = cfg.data.packed if cfg.data.packed is not None else (
            attention == "flash_attention_2" or cfg.data.max_tokens_per_batch is not None)
        self._hf_ds_config = None

    def build_model(self, ds_config: dict[str, Any]) -> torch.nn.Module:
        from transformers.integrations import HfDeepSpeedConfig

        # While this object lives, transformers creates and loads the LLM and the encoders inside
        # deepspeed.zero.Init: each rank only ever holds its partition. The small adapter modules are
        # partitioned by deepspeed.initialize.
        self._hf_ds_config = HfDeepSpeedConfig(ds_config)
        # DeepSpeed's precision decides the dtype every trained tensor is built in (ZeRO flattens them into one
        # buffer per dtype); the recipe's own dtype is what an export is loaded in.
        dtype = "bfloat16" if ds_config.get("bf16", {}).get("enabled") else "float32"
        model = AffectGPT.from_config(replace(self.model_cfg, dtype=dtype))
        init = self.cfg.init
        if init.from_model is not None and init.adapter == "checkpoint":
            try:
                model.load_adapter(init.from_model / ADAPTER_FILE)
            except ValueError as e:
                raise ValueError(f"{e} (init.adapter=fresh starts them anew)") from e
            log.info("adapter (fusion, projectors) initialised from %s", init.from_model / ADAPTER_FILE)
        lora = self.cfg.lora_config()
        if lora is not None:
            add_lora(model.llm, lora)
        if self.cfg.model.activation_checkpointing:
            model.activation_checkpointing_enable(self.cfg.model.activation_checkpointing_every_n_layers)
        return model

    def batches(self, model: torch.nn.Module, rank: int, world_size: int):
        from shards.loader import ShardLoader

        on_cuda = next(model.parameters()).device.type == "cuda"
        return ShardLoader(
            str(self.cfg.data.shards), self.cfg.micro_batch_size, rank=rank, world_size=world_size,
            num_workers=loader_workers(self.cfg.data.workers, on_cuda), seed=self.cfg.data.seed,
            collate_fn=self.collator(model), pin_memory=on_cuda, on_corrupt=self.cfg.data.on_corrupt,
        )

    def collator(self, model: torch.nn.Module):
        """The training batches' collator: padded or packed, a packed one refusing samples over the budget."""
        return model.collator(train=True, packed=self.packed, max_tokens=self.cfg.data.max_tokens_per_batch)

    def describe(self) -> dict[str, Any]:
        return to_dict(self.model_cfg)

    def facts(self, model: torch.nn.Module, batches: Any) -> dict[str, Any]:
        return {
            "attention": model.llm.config._attn_implementation,
            "llm_class": type(model.llm).__name__,
            "packed": self.packed,
            "max_tokens_per_batch": self.cfg.data.max_tokens_per_batch,
            "shards_sha256": batches.shard_digest,
        }

    def metrics(self, run_id: str | None, facts: dict[str, Any]) -> MetricsLogger | None:
        if not self.cfg.tracking.enabled:
            return None
        from affectgpt.tracking import MlflowMetrics
        from affectgpt.train.export import parent_run_id

        cfg = self.cfg
        tags = {"kind": "train", "selection": cfg.eval.rule, **cfg.tags}
        parent = parent_run_id(cfg.init.from_model) if cfg.init.from_model else None
        if parent:  # Stage 2 from a tracked Stage 1 export; mlflow.parentRunId nests it in the UI
            tags.update({"parent_run_id": parent, "mlflow.parentRunId": parent})
        return MlflowMetrics.open(
            cfg.tracking, cfg.checkpoint.dir, run_name=cfg.run_name or cfg.checkpoint.dir.name,
            params={**flatten(to_dict(cfg)), **facts}, tags=tags, run_id=run_id,
            inputs={"train": cfg.data.shards, **({"validation": cfg.eval.shards} if cfg.eval.shards else {})},
        )
