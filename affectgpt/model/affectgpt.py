"""The AffectGPT module: encoders -> fusion -> projector -> placeholder slots of a causal LLM's prompt.

Build from a recipe with ``AffectGPT.from_config(cfg)``; save and reload one self-describing directory::

    <dir>/affectgpt.yaml        the recipe, paths relative to <dir>
    <dir>/llm/                  the LLM (HF format, tied embeddings kept tied) + its tokenizer
    <dir>/video/, <dir>/audio/  each encoder (HF format) + its image processor / feature extractor
    <dir>/adapter.safetensors   everything trained from scratch: fusion, projectors, missing-modality tokens

DeepSpeed ZeRO-3: create ``transformers.integrations.HfDeepSpeedConfig(ds_config)`` (and keep it alive) before
``from_config``; transformers then partitions the LLM and the encoders as it loads them, and ``deepspeed.initialize``
partitions the small adapter modules. Nothing here reads a parameter's shape at run time, and every parameter
is used inside its own module's ``forward``, where ZeRO-3 gathers it. Under ZeRO-3 pass the consolidated
state dict to ``save_pretrained(dir, state_dict=...)``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import CausalLMOutput
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

from affectgpt.config import ConfigError, from_dict, merge, read_yaml, to_dict
from affectgpt.model import hub
from affectgpt.model.attention import resolve_attn_implementation
from affectgpt.model.collator import AudioInputs, Collator, Sample, VideoInputs
from affectgpt.model.config import AffectGPTConfig, ModalityConfig
from affectgpt.model.encoders import AudioEncoder, FrozenAware, VideoEncoder, load_encoder
from affectgpt.model.fusion import PreFusion, Projector, build_pool
from affectgpt.model.preprocess import FramePreprocessor, audio_features, shaped_audio_features
from affectgpt.model.prompt import (
    AUDIO_TOKEN,
    FUSION_TOKEN,
    IGNORE_INDEX,
    PLACEHOLDER_TOKENS,
    VIDEO_TOKEN,
    PromptBuilder,
)

log = logging.getLogger(__name__)

CONFIG_FILE = "affectgpt.yaml"
ADAPTER_FILE = "adapter.safetensors"


class ModalityBranch(nn.Module):
    """Encoder -> pool -> projector. Samples without this modality get a learned "missing" sequence instead."""

    def __init__(self, encoder: FrozenAware, cfg: ModalityConfig, num_times: int, hidden: int, heads: int,
                 dtype: torch.dtype):
        super().__init__()
        width = encoder.hidden_size
        self.encoder = encoder
        self.pool = build_pool(cfg.fusion, width, cfg.num_queries, num_times, cfg.qformer_layers, heads).to(dtype)
        self.proj = Projector(width, hidden).to(dtype)
        self.missing = nn.Parameter(torch.randn(cfg.num_queries, hidden, dtype=dtype) * 0.02)

    def forward(self, present: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        tokens, mask = self.encoder(**inputs)
        feats = self.proj(self.pool(tokens.to(self.missing.dtype), mask))
        return torch.where(present.to(feats.device)[:, None, None], feats, self.missing.to(feats.dtype))


class AffectGPT(nn.Module):
    def __init__(self, cfg: AffectGPTConfig, llm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None,
                 video: FrozenAware | None = None, audio: FrozenAware | None = None,
                 image_processor: Any = None, feature_extractor: Any = None):
        super().__init__()
        self.config = cfg
        self.llm = llm
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.feature_extractor = feature_extractor
        hidden = llm.config.get_text_config().hidden_size
        dtype = getattr(torch, cfg.dtype)
        self.video = None if video is None else ModalityBranch(
            video, cfg.video, cfg.num_frames, hidden, cfg.fusion_heads, dtype)
        # Speech encoders carry time in their own position embeddings: one time step.
        self.audio = None if audio is None else ModalityBranch(audio, cfg.audio, 1, hidden, cfg.fusion_heads, dtype)
        self.pre_fusion = None
        if cfg.pre_fusion_tokens:
            self.pre_fusion = PreFusion(hidden, cfg.pre_fusion_tokens, cfg.fusion_heads).to(dtype)
        self.token_ids = placeholder_ids(tokenizer, llm)

    @classmethod
    def from_config(cls, cfg: AffectGPTConfig) -> AffectGPT:
        dtype = getattr(torch, cfg.dtype)
        attn = resolve_attn_implementation(cfg.attn_implementation)
        gguf = {"gguf_file": cfg.gguf_file} if cfg.gguf_file else {}
        tokenizer = AutoTokenizer.from_pretrained(cfg.llm, **gguf)
        if cfg.llm_init == "pretrained":
            llm = AutoModelForCausalLM.from_pretrained(cfg.llm, attn_implementation=attn, dtype=dtype, **gguf)
        else:
            llm_config = AutoConfig.from_pretrained(cfg.llm, **gguf)
            llm = AutoModelForCausalLM.from_config(llm_config, attn_implementation=attn, dtype=dtype)
        # New placeholder rows are never read (features replace them), and transformers draws them from the
        # global RNG differently under ZeRO-3 than without: keep the draw from shifting the adapter's init.
        with torch.random.fork_rng(devices=[]):
            add_placeholder_tokens(tokenizer, llm)
        video = audio = image_processor = feature_extractor = None
        if cfg.video is not None:
            image_processor = AutoImageProcessor.from_pretrained(cfg.video.encoder)
            video = VideoEncoder(load_encoder(cfg.video.encoder, dtype), cfg.freeze_encoders,
                                 FramePreprocessor.from_hf(image_processor))
        if cfg.audio is not None:
            feature_extractor = AutoFeatureExtractor.from_pretrained(cfg.audio.encoder)
            audio = AudioEncoder(load_encoder(cfg.audio.encoder, dtype), cfg.freeze_encoders,
                                 audio_features(feature_extractor))
        # In eval mode, like every transformers checkpoint at load: call .train() before training.
        model = cls(cfg, llm, tokenizer, video, audio, image_processor, feature_extractor).eval()
        log.info("AffectGPT: %s LLM (%s, %s init, attention %s), video=%s, audio=%s, %s",
                 type(llm).__name__, cfg.llm, cfg.llm_init, attn,
                 cfg.video and cfg.video.fusion, cfg.audio and cfg.audio.fusion, model.parameter_summary())
        return model

    @classmethod
    def on_meta(cls, cfg: AffectGPTConfig) -> AffectGPT:
        """The recipe's architecture on the ``meta`` device: every parameter's shape, no weights, built in seconds
        from ``config.json`` alone (offline for hub ids through ``affectgpt.model.hub``). For exact parameter
        counts and FLOPs (``affectgpt plan``); it cannot generate or be trained.

        With the LLM's tokenizer at hand (a local directory) the placeholder tokens are added exactly as
        ``from_config`` does; without it they take the last rows of the vocabulary, so a vocabulary without spare
        rows counts 3 embedding rows fewer than the real model (under 0.001 % of a 7B LLM)."""
        dtype = getattr(torch, cfg.dtype)
        gguf = {"gguf_file": cfg.gguf_file} if cfg.gguf_file else {}
        llm_config = AutoConfig.from_pretrained(hub.architecture(cfg.llm), **gguf)
        try:
            tokenizer = None if hub.is_hub_id(cfg.llm) else AutoTokenizer.from_pretrained(cfg.llm, **gguf)
        except (OSError, ValueError):
            tokenizer = None  # a directory holding config.json only
        # SDPA where the architecture has it (its FLOPs are FlashAttention-2's), else eager (Gemma-2).
        attn = "sdpa" if MODEL_FOR_CAUSAL_LM_MAPPING[type(llm_config)]._supports_sdpa else "eager"
        with torch.device("meta"):
            llm = AutoModelForCausalLM.from_config(llm_config, attn_implementation=attn, dtype=dtype)
            if tokenizer is not None:
                add_placeholder_tokens(tokenizer, llm)
            video = audio = None
            # No processor configs here: preprocessing of the right shapes (frames at the tower's input size).
            if cfg.video is not None:
                video = VideoEncoder(load_encoder(hub.architecture(cfg.video.encoder), dtype, weights=False),
                                     cfg.freeze_encoders, FramePreprocessor.passthrough())
            if cfg.audio is not None:
                encoder = load_encoder(hub.architecture(cfg.audio.encoder), dtype, weights=False)
                audio = AudioEncoder(encoder, cfg.freeze_encoders, shaped_audio_features(encoder))
            return cls(cfg, llm, tokenizer, video, audio).eval()

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> AffectGPT:
        """Load a directory written by ``save_pretrained``; ``overrides`` replace top-level recipe keys
        (e.g. ``attn_implementation="eager"``)."""
        path = Path(path)
        model = cls.from_config(load_recipe(path / CONFIG_FILE, path, overrides))
        model.load_adapter(path / ADAPTER_FILE)
        return model

    def load_adapter(self, path: str | Path) -> None:
        """Fusion, projectors and missing-modality tokens from an ``adapter.safetensors``. Before
        ``deepspeed.initialize`` these modules are not partitioned, so a plain state-dict load is right under
        every strategy."""
        adapter = load_file(str(path))
        expected = set(self.adapter_state_dict())
        if set(adapter) != expected:
            raise ValueError(f"{path} does not fit this model's adapter: missing {sorted(expected - set(adapter))}, "
                             f"unexpected {sorted(set(adapter) - expected)}")
        self.load_state_dict(adapter, strict=False)

    def save_pretrained(self, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write the self-describing directory. ``state_dict`` (keys as in ``self.state_dict()``) replaces the
        module's own tensors, e.g. the consolidated weights of a ZeRO-3 checkpoint."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = self.state_dict() if state_dict is None else state_dict
        self.llm.save_pretrained(path / "llm", state_dict=_strip(state, "llm."))
        self.tokenizer.save_pretrained(path / "llm")
        recipe = to_dict(self.config)
        recipe.update(llm="llm", gguf_file=None, llm_init="pretrained")
        for name, branch, processor in (("video", self.video, self.image_processor),
                                        ("audio", self.audio, self.feature_extractor)):
            if branch is not None:
                branch.encoder.model.save_pretrained(path / name, state_dict=_strip(state, f"{name}.encoder.model."))
                processor.save_pretrained(path / name)
                recipe[name]["encoder"] = name
        adapter_keys = set(self.adapter_state_dict())
        save_file({k: v.detach().contiguous() for k, v in state.items() if k in adapter_keys}, str(path / ADAPTER_FILE))
        (path / CONFIG_FILE).write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
        log.info("saved AffectGPT to %s", path)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors trained from scratch (not part of any pretrained checkpoint)."""
        return {k: v for k, v in self.state_dict().items()
                if not (k.startswith("llm.") or ".encoder.model." in k)}

    def collator(self, train: bool = True, packed: bool = False, max_tokens: int | None = None) -> Collator:
        cfg = self.config
        prompt = PromptBuilder(
            tokenizer=self.tokenizer, instruction=cfg.instruction,
            num_video=cfg.video.num_queries if cfg.video else 0,
            num_audio=cfg.audio.num_queries if cfg.audio else 0,
            num_fusion=cfg.pre_fusion_tokens,
            max_subtitle_tokens=cfg.max_subtitle_tokens, max_description_tokens=cfg.max_description_tokens,
            chat_template=cfg.chat_template,
        )
        video = VideoInputs(cfg.num_frames, cfg.frame_size) if cfg.video else None
        audio = AudioInputs(cfg.sample_rate, int(cfg.max_audio_seconds * cfg.sample_rate)) if cfg.audio else None
        return Collator(prompt, video, audio, train=train, packed=packed, max_tokens=max_tokens)

    def embed(self, input_ids: torch.Tensor, frames: torch.Tensor | None = None,
              has_video: torch.Tensor | None = None, audio: torch.Tensor | None = None,
              audio_lengths: torch.Tensor | None = None, has_audio: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with every placeholder slot replaced by its modality's feature vector. The raw
        frames and waveforms of ``collator()`` become encoder inputs here, on the model's device."""
        embeds = self.llm.get_input_embeddings()(input_ids)
        streams: dict[str, torch.Tensor] = {}
        if self.video is not None:
            if frames is None or has_video is None:
                raise ValueError("this model has a video encoder: the batch needs frames and has_video")
            streams[VIDEO_TOKEN] = self.video(has_video, frames=frames)
        if self.audio is not None:
            if audio is None or audio_lengths is None or has_audio is None:
                raise ValueError("this model has an audio encoder: the batch needs audio, audio_lengths and "
                                 "has_audio")
            streams[AUDIO_TOKEN] = self.audio(has_audio, audio=audio, audio_lengths=audio_lengths)
        if self.pre_fusion is not None:
            streams[FUSION_TOKEN] = self.pre_fusion(streams[VIDEO_TOKEN], streams[AUDIO_TOKEN])
        for token, feats in streams.items():
            slots = input_ids == self.token_ids[token]
            # A meta-device model (``on_meta``) has shapes but no values to check.
            if not slots.is_meta and int(slots.sum()) != feats.shape[0] * feats.shape[1]:
                raise ValueError(f"{int(slots.sum())} {token} slots in the batch for {feats.shape[0]} x "
                                 f"{feats.shape[1]} feature vectors: build batches with model.collator()")
            embeds = embeds.masked_scatter(slots[..., None], feats.to(embeds.dtype))
        return embeds

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                frames: torch.Tensor | None = None, has_video: torch.Tensor | None = None,
                audio: torch.Tensor | None = None, audio_lengths: torch.Tensor | None = None,
                has_audio: torch.Tensor | None = None, num_items_in_batch: int | torch.Tensor | None = None,
                **llm_kwargs: Any):
        """With ``labels``: ``.loss`` only, the cross-entropy summed over the description tokens and divided by
        ``num_items_in_batch`` (the global batch's target count) or, without it, by this batch's. Without
        labels: the LLM's output, ``.logits`` at every position.

        The LM head projects only the positions that have a target. Prompts (placeholders, instruction,
        subtitle, chat template) are most of every sample, and the head is the LLM's largest matmul whenever
        the vocabulary is large next to the width (8192 x 64 for the tiny zoo, 262144 x 640 for Gemma-3-270M):
        the full-sequence logits cost the most compute and memory of the step and none of it reaches the loss.

        ``use_cache=False`` matters beyond memory: transformers only detects packed rows from restarting
        ``position_ids`` (and builds the block-diagonal mask) when there is no cache.
        """
        embeds = self.embed(input_ids, frames, has_video, audio, audio_lengths, has_audio)
        inputs = {"inputs_embeds": embeds, "attention_mask": attention_mask, "position_ids": position_ids,
                  "use_cache": False, **llm_kwargs}
        if labels is None:
            return self.llm(**inputs)
        hidden = self.llm.get_decoder()(**inputs).last_hidden_state
        return CausalLMOutput(loss=description_loss(self.llm, hidden, labels, num_items_in_batch))

    @torch.no_grad()
    def generate(self, samples: list[Sample], max_new_tokens: int = 128, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, **generate_kwargs: Any) -> list[str]:
        """Describe each sample (batched, left-padded prompts). Greedy unless ``do_sample``."""
        device = self.llm.get_input_embeddings().weight.device
        collate = self.collator(train=False)
        batch = {k: v.to(device) for k, v in collate(samples).items()}
        attention_mask = batch.pop("attention_mask")
        embeds = self.embed(**batch)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {
            "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        out = self.llm.generate(
            inputs_embeds=embeds, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
            pad_token_id=collate.prompt.pad_id, eos_token_id=self.stop_token_ids(), **sampling,
            **generate_kwargs,
        )
        return [text.strip() for text in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def stop_token_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = self.llm.generation_config.eos_token_id
        ids.update(configured if isinstance(configured, list) else [configured])
        return sorted(i for i in ids if i is not None)

    def activation_checkpointing_enable(self, every_n_layers: int = 1) -> None:
        """Recompute LLM layer activations in the backward pass (memory for time; long prompts, 7B models)."""
        self.llm.activation_checkpointing_enable({"use_reentrant": False}, every_n_layers=every_n_layers)

    def parameter_summary(self) -> str:
        parts = {"llm": self.llm, "video": self.video, "audio": self.audio, "pre_fusion": self.pre_fusion}
        counts = []
        for name, module in parts.items():
            if module is not None:
                total = sum(_numel(p) for p in module.parameters())
                trainable = sum(_numel(p) for p in module.parameters() if p.requires_grad)
                counts.append(f"{name} {total / 1e6:.2f}M ({trainable / 1e6:.2f}M trainable)")
        return ", ".join(counts)



def description_loss(llm: PreTrainedModel, hidden: torch.Tensor, labels: torch.Tensor,
                     num_items: int | torch.Tensor | None) -> torch.Tensor:
    """The causal-LM loss of transformers' ``labels=`` (token t predicts t + 1, ``IGNORE_INDEX`` skipped), with
    the head applied to the target positions alone."""
    targets = labels[..., 1:]
    keep = targets != IGNORE_INDEX
    return target_loss(llm, hidden[..., :-1, :][keep], targets[keep], keep.sum() if num_items is None else num_items)


def target_loss(llm: PreTrainedModel, hidden: torch.Tensor, targets: torch.Tensor,
                divisor: int | torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the head's fp32 logits at ``hidden`` (one row per target, after the family's final
    soft-capping), summed and divided by ``divisor``. Shapes are static, so the planner traces it on fake tensors."""
    logits = llm.get_output_embeddings()(hidden)
    cap = getattr(llm.config.get_text_config(), "final_logit_softcapping", None)
    if cap is not None:  # Gemma 2
        logits = torch.tanh(logits / cap) * cap
    return nn.functional.cross_entropy(logits.float(), targets, reduction="sum") / divisor


def placeholder_ids(tokenizer: PreTrainedTokenizerBase | None, llm: PreTrainedModel) -> dict[str, int]:
    """Token id of each placeholder: the tokenizer's, or (a meta build without one) the vocabulary's last rows."""
    if tokenizer is not None:
        return {t: tokenizer.convert_tokens_to_ids(t) for t in PLACEHOLDER_TOKENS}
    vocab = llm.config.get_text_config().vocab_size
    return {t: vocab - len(PLACEHOLDER_TOKENS) + i for i, t in enumerate(PLACEHOLDER_TOKENS)}


def load_recipe(path: str | Path, base: str | Path, overrides: dict[str, Any] | None = None) -> AffectGPTConfig:
    """A recipe YAML (``configs/models/*.yaml`` or a model dir's ``affectgpt.yaml``) with ``overrides`` merged
    over it, its relative ``llm`` and encoder paths joined to ``base`` and made absolute (hub ids stay as
    written, ``hub.resolve``): the recipe is stored in checkpoints and exports and must mean the same from any
    working directory."""
    data = merge(read_yaml(path), overrides or {})
    base = Path(base)
    if "llm" in data:
        data["llm"] = hub.resolve(base, data["llm"])
    for name in ("video", "audio"):
        if isinstance(data.get(name), dict) and "encoder" in data[name]:
            data[name]["encoder"] = hub.resolve(base, data[name]["encoder"])
    try:
        return from_dict(AffectGPTConfig, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def add_placeholder_tokens(tokenizer: PreTrainedTokenizerBase, llm: PreTrainedModel) -> None:
    """Give a tokenizer that lacks them the placeholder tokens, growing the embedding only if it must
    (Qwen2.5, for one, already has spare rows)."""
    missing = [t for t in PLACEHOLDER_TOKENS if t not in tokenizer.get_vocab()]
    if not missing:
        return
    tokenizer.add_tokens(missing, special_tokens=True)
    if len(tokenizer) > llm.config.get_text_config().vocab_size:
        # Placeholder rows are never read as inputs (features replace them): no need for mean resizing.
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    log.info("added placeholder tokens %s to the tokenizer of %s", missing, type(llm).__name__)


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _numel(p: torch.Tensor) -> int:
    return getattr(p, "ds_numel", p.numel())  # ZeRO-3 partitioned parameters report their full size here
