"""Frozen (by default) modality encoders: any HF vision tower per frame, any HF speech encoder per clip.

Both return tokens shaped ``[B, T, P, D]`` (T time steps of P tokens; audio has T = 1 because speech encoders
already encode time) plus an optional validity mask ``[B, T, P]``, so fusion is written once for both.

Which class loads a directory:
- a dual-tower checkpoint (CLIP, SigLIP: the config has ``vision_config``) loads only its vision tower;
- an encoder-decoder checkpoint (Whisper) loads the model and keeps ``get_encoder()``;
- an encoder saved alone (``architectures: [WhisperEncoder]``, as ``save_pretrained`` writes it) loads that class;
- anything else (ViT, CLIPVisionModel, HuBERT, wav2vec2) loads with its ``AutoModel`` class.
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from affectgpt.model.preprocess import FramePreprocessor, LogMelFeatures, WaveformFeatures


def load_encoder(path: str | Path, dtype: torch.dtype = torch.float32, weights: bool = True) -> PreTrainedModel:
    """The encoder of ``path``; ``weights=False`` builds it from ``config.json`` alone (randomly initialised,
    or shapes only under ``torch.device("meta")``)."""
    config = AutoConfig.from_pretrained(path)
    arch = (config.architectures or [""])[0]
    if arch.endswith("Encoder"):
        module = importlib.import_module(type(config).__module__.replace(".configuration_", ".modeling_"))
        cls = getattr(module, arch)
    elif getattr(config, "vision_config", None) is not None:
        cls, config = MODEL_MAPPING[type(config.vision_config)], config.vision_config
    else:
        cls = MODEL_MAPPING[type(config)]
    if weights:
        with _outside_zero3():
            model = cls.from_pretrained(path, dtype=dtype)
    else:
        model = cls._from_config(config, dtype=dtype)
    if getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()
    return model


@contextlib.contextmanager
def _outside_zero3():
    """Load an encoder whole even while an ``HfDeepSpeedConfig`` (ZeRO-3) is alive: transformers 5.24 then runs
    Whisper's ``_init_weights`` on partitioned (empty) parameters and fails on their shape. deepspeed.initialize
    partitions the encoder afterwards; it is frozen and small next to the LLM."""
    from transformers.integrations import deepspeed as hf_ds

    holder = hf_ds._hf_deepspeed_config_weak_ref() if hf_ds._hf_deepspeed_config_weak_ref is not None else None
    hf_ds.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if holder is not None:
            hf_ds.set_hf_deepspeed_config(holder)


class FrozenAware(nn.Module):
    """An HF encoder that, when frozen, has no trainable parameters, stays in eval mode and builds no graph."""

    def __init__(self, model: PreTrainedModel, frozen: bool):
        super().__init__()
        self.model = model
        self.frozen = frozen
        if frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def train(self, mode: bool = True) -> FrozenAware:
        super().train(mode)
        if self.frozen:
            self.model.eval()  # dropout and layer statistics of a frozen encoder never change
        return self

    def grad_context(self):
        return torch.no_grad() if self.frozen else contextlib.nullcontext()


class VideoEncoder(FrozenAware):
    def __init__(self, model: PreTrainedModel, frozen: bool, preprocess: FramePreprocessor):
        super().__init__(model, frozen)
        self.preprocess = preprocess

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, None]:
        """uint8 ``frames [B, T, H, W, 3]`` -> tokens ``[B, T, P, D]``; every frame is encoded independently."""
        b, t = frames.shape[:2]
        with self.grad_context():
            # The encoder may run in bf16 (dtype: bfloat16, or DeepSpeed's bf16 cast): pixels in its dtype.
            pixel_values = self.preprocess(frames.flatten(0, 1), self.model.dtype)
            tokens = self.model(pixel_values=pixel_values).last_hidden_state
        return tokens.unflatten(0, (b, t)), None


class AudioEncoder(FrozenAware):
    def __init__(self, model: PreTrainedModel, frozen: bool, features: LogMelFeatures | WaveformFeatures):
        super().__init__(model, frozen)
        self.features = features

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Waveforms ``[B, N]`` (+ lengths) -> tokens ``[B, 1, S, D]``, mask (Whisper log-mel or the waveform)."""
        with self.grad_context():
            values, sample_mask = self.features(audio, audio_lengths)
            kwargs = {self.model.main_input_name: values.to(self.model.dtype)}
            if sample_mask is not None:
                kwargs["attention_mask"] = sample_mask
            tokens = self.model(**kwargs).last_hidden_state
        mask = None
        if sample_mask is not None:
            # wav2vec2-style encoders downsample the waveform: map the sample mask onto output frames.
            mask = self.model._get_feature_vector_attention_mask(tokens.shape[1], sample_mask).bool()
            mask = mask[:, None, :]
        return tokens[:, None], mask
