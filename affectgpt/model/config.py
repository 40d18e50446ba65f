"""The model recipe: which checkpoints, how modalities are fused, what inputs the model expects.

A recipe is YAML (``configs/models/*.yaml``) read with ``affectgpt.config.load_config(AffectGPTConfig, path)``.
Every model is a local Hugging Face directory or a hub id (``affectgpt.model.hub``); swapping the backbone is
the one key ``llm``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from affectgpt.model.hub import is_hub_id

Fusion = Literal["qformer", "attention", "mean"]


@dataclass
class ModalityConfig:
    """One input modality: a frozen (by default) encoder, then fusion into ``num_queries`` LLM tokens."""

    # A local HF directory or hub id: a vision tower (CLIP/SigLIP/ViT) or a speech encoder (Whisper/HuBERT/wav2vec2).
    encoder: Path
    fusion: Fusion = "qformer"
    num_queries: int = 8
    qformer_layers: int = 2

    def __post_init__(self) -> None:
        _require_dir("encoder", self.encoder)
        if self.num_queries < 1:
            raise ValueError(f"num_queries must be >= 1, got {self.num_queries}")
        if self.qformer_layers < 1:
            raise ValueError(f"qformer_layers must be >= 1, got {self.qformer_layers}")


@dataclass
class AffectGPTConfig:
    llm: Path  # a local HF causal-LM directory (with its tokenizer) or hub id, or a folder holding ``gguf_file``
    gguf_file: str | None = None  # a GGUF file inside ``llm``; transformers dequantises it at load
    # ``random`` keeps the architecture and tokenizer of ``llm`` but not its weights (scaling studies, smoke runs).
    llm_init: Literal["pretrained", "random"] = "pretrained"
    video: ModalityConfig | None = None  # None: the model has no video input at all
    audio: ModalityConfig | None = None  # None: the model has no audio input at all
    # > 0: that many tokens mixing both modalities before the LLM (the 2025 AffectGPT's pre-fusion).
    pre_fusion_tokens: int = 0
    fusion_heads: int = 8  # attention heads of the Q-Former and pre-fusion blocks
    freeze_encoders: bool = True
    attn_implementation: Literal["auto", "flash_attention_2", "sdpa", "eager"] = "auto"
    dtype: Literal["float32", "bfloat16"] = "float32"  # CPUs here multiply bf16 ~400x slower: fp32 on CPU
    # What the inputs look like (the pack config writes samples this way; the collator checks it).
    num_frames: int = 8
    frame_size: int = 224
    sample_rate: int = 16000
    max_audio_seconds: float = 10.0
    max_subtitle_tokens: int = 128
    max_description_tokens: int = 256
    # A Jinja chat template for the prompt; None: the tokenizer's own, or for base models without one the
    # plain format of affectgpt.model.prompt.PLAIN_TEMPLATE.
    chat_template: str | None = None
    instruction: str = (
        "Describe the emotional state of the person in this clip. Reason over the facial expression, "
        "the voice and the words, then name the emotions."
    )

    def __post_init__(self) -> None:
        _require_dir("llm", self.llm)
        if self.gguf_file is not None and not (self.llm / self.gguf_file).is_file():
            raise ValueError(f"gguf_file: {self.llm / self.gguf_file} does not exist")
        if self.pre_fusion_tokens < 0:
            raise ValueError(f"pre_fusion_tokens must be >= 0, got {self.pre_fusion_tokens}")
        if self.pre_fusion_tokens and (self.video is None or self.audio is None):
            raise ValueError("pre_fusion_tokens > 0 mixes video and audio: both modalities must be configured")
        for key in ("fusion_heads", "num_frames", "frame_size", "sample_rate", "max_subtitle_tokens",
                    "max_description_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.max_audio_seconds <= 0:
            raise ValueError(f"max_audio_seconds must be > 0, got {self.max_audio_seconds}")


def _require_dir(key: str, path: Path) -> None:
    if not path.is_dir() and not is_hub_id(path):
        hint = " (run `affectgpt zoo build --out models/` for the local zoo)" if "models" in path.parts else ""
        raise ValueError(f"{key}: directory {path} does not exist{hint}")
