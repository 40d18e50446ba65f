"""LoRA on the LLM (``finetune: lora``): low-rank adapters on its linear projections, through ``peft``.

The adapters are injected in place (``peft.LoraModel`` on the HF model itself), so ``AffectGPT.llm`` stays the
same causal-LM class, and every other LLM parameter is frozen. Under ZeRO-3 the base weights are already
partitioned when the adapters are added: peft reads only the layers' ``in_features``/``out_features``, and
``deepspeed.initialize`` partitions the new adapter tensors with the other trainable modules.

The tuner's ``merge_and_unload()`` folds the adapters into the base weights (``affectgpt export`` does), so an
exported LLM is plain ``transformers``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from transformers import PreTrainedModel

log = logging.getLogger(__name__)

# Every attention and MLP projection, as the official AffectGPT recipe trains (r=16 on all projections).
DEFAULT_TARGETS: dict[str, list[str]] = {
    **{family: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
       for family in ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3_text")},
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
}
ADAPTER_NAME = "default"


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # None: the family's projections (DEFAULT_TARGETS), else peft's "all-linear" (every linear but the head).
    target_modules: list[str] | None = None

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"lora.r must be >= 1, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if self.target_modules is not None and not self.target_modules:
            raise ValueError("lora.target_modules is empty: list module names, or leave it unset for the defaults")


def _peft_config(llm: PreTrainedModel, cfg: LoraConfig):
    import peft

    model_type = llm.config.get_text_config().model_type
    targets = cfg.target_modules or DEFAULT_TARGETS.get(model_type, "all-linear")
    return peft.LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                           bias="none", task_type="CAUSAL_LM")


def add_lora(llm: PreTrainedModel, cfg: LoraConfig):
    """Inject adapters into ``llm`` in place and freeze its other parameters; returns the peft tuner, whose
    ``merge_and_unload()`` gives back ``llm`` with the adapters merged."""
    import peft

    try:
        tuner = peft.LoraModel(llm, _peft_config(llm, cfg), ADAPTER_NAME)
    except ValueError as e:  # peft names the targets it did not find
        raise ValueError(f"lora.target_modules: {e}") from e
    log.info("LoRA r=%d alpha=%d on %s", cfg.r, cfg.alpha, sorted(tuner.peft_config[ADAPTER_NAME].target_modules))
    return tuner
