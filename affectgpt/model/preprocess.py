"""Encoder inputs from raw batches, as batched tensor ops on the model's device.

Batches carry what the shards hold (``affectgpt.model.collator``): frames as uint8 ``[B, T, H, W, 3]`` and the
16 kHz waveform as float32 ``[B, N]`` with per-sample lengths. The model turns them into what its encoders were
trained on, reading the settings of the checkpoint's own Hugging Face processor, and computes the same numbers
as that processor (``tests/model/test_preprocess.py`` checks them against it):

- ``FramePreprocessor`` (CLIP, SigLIP, ViT image processors): resize (only where the frame size differs,
  antialiased as Pillow is), centre crop, rescale and normalise with the processor's mean and std;
- ``LogMelFeatures`` (Whisper): STFT and mel filterbank in one call per batch, Whisper's log compression; the
  frames that hold only the window's zero padding are filled in, not transformed;
- ``WaveformFeatures`` (HuBERT, wav2vec2): the waveform padded to the longest clip, each clip normalised to zero
  mean and unit variance over its real samples, with an attention mask when the extractor returns one.

One call per batch replaces the per-image and per-clip numpy loops of the processors, and on a GPU the work
leaves the CPU entirely. The constants stay numpy float32 here (not module buffers): DeepSpeed casts a module's
floating-point buffers to bf16, which would change the mel filters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

MEL_FLOOR = 1e-10  # Whisper's clamp before the log

# PIL resampling codes as HF image processors store them (``resample``) -> torch modes with the same filter.
_RESAMPLE = {2: "bilinear", 3: "bicubic"}


@dataclass(frozen=True)
class FramePreprocessor:
    """uint8 frames ``[..., H, W, 3]`` -> ``pixel_values [..., 3, h, w]`` as the HF image processor makes them."""

    shortest_edge: int | None  # resize so the shorter side has this length (CLIP), or
    height: int | None  # ... to exactly height x width (SigLIP, ViT); both None: no resize
    width: int | None
    resample: str
    crop: tuple[int, int] | None  # centre crop (height, width) after the resize
    rescale: float  # 1.0 when the processor does not rescale
    mean: tuple[float, ...] | None  # None when the processor does not normalise
    std: tuple[float, ...] | None

    @classmethod
    def from_hf(cls, processor: Any) -> FramePreprocessor:
        name = type(processor).__name__
        size = {k: v for k, v in dict(processor.size or {}).items() if v is not None} if processor.do_resize else {}
        shortest, height, width = size.get("shortest_edge"), size.get("height"), size.get("width")
        if processor.do_resize and size.keys() not in ({"shortest_edge"}, {"height", "width"}):
            raise ValueError(f"{name}: resize size {size} is not supported (shortest_edge, or height and width)")
        resample = _RESAMPLE.get(int(getattr(processor, "resample", 2) or 2))
        if processor.do_resize and resample is None:
            raise ValueError(f"{name}: resample={processor.resample} is not supported (2 bilinear, 3 bicubic)")
        crop = None
        if getattr(processor, "do_center_crop", False):
            crop = (int(processor.crop_size["height"]), int(processor.crop_size["width"]))
        if getattr(processor, "do_pad", False):
            raise ValueError(f"{name}: do_pad is not supported")
        normalize = processor.do_normalize
        return cls(
            shortest_edge=shortest, height=height, width=width, resample=resample or "bilinear", crop=crop,
            rescale=float(processor.rescale_factor) if processor.do_rescale else 1.0,
            mean=tuple(float(m) for m in processor.image_mean) if normalize else None,
            std=tuple(float(s) for s in processor.image_std) if normalize else None,
        )

    @classmethod
    def passthrough(cls) -> FramePreprocessor:
        """Frames already at the encoder's input size, rescaled to [0, 1] (shapes-only models: ``on_meta``)."""
        return cls(None, None, None, "bilinear", None, 1 / 255, None, None)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) of the resize, before the crop (HF's rounding for the longer side)."""
        if self.shortest_edge:
            short, long = sorted((height, width))
            other = int(self.shortest_edge * long / short)
            return (self.shortest_edge, other) if height <= width else (other, self.shortest_edge)
        if self.height and self.width:
            return self.height, self.width
        return height, width

    def __call__(self, frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if frames.dtype != torch.uint8 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [..., H, W, 3], got {frames.dtype} {list(frames.shape)}")
        lead, (h, w) = frames.shape[:-3], frames.shape[-3:-1]
        x = frames.reshape(-1, h, w, 3).permute(0, 3, 1, 2)  # NCHW view of channels-last memory, no copy
        size = self.output_size(h, w)
        if size != (h, w):
            x = self._resize(x, size)
        if self.crop is not None:
            ch, cw = self.crop
            top, left = (x.shape[-2] - ch) // 2, (x.shape[-1] - cw) // 2
            if top < 0 or left < 0:
                raise ValueError(f"centre crop {self.crop} is larger than the resized frame {tuple(x.shape[-2:])}")
            x = x[..., top : top + ch, left : left + cw]
        # One multiply-add: (x * rescale - mean) / std = x * (rescale / std) - mean / std.
        mean = torch.tensor(self.mean or (0.0,) * 3, dtype=torch.float32, device=x.device)
        std = torch.tensor(self.std or (1.0,) * 3, dtype=torch.float32, device=x.device)
        scale, shift = (self.rescale / std)[:, None, None], (mean / std)[:, None, None]
        pixels = torch.addcmul(-shift, x.to(torch.float32), scale)
        return pixels.to(dtype).reshape(*lead, 3, *pixels.shape[-2:])

    def _resize(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Pillow resizes uint8 images with an antialiased filter, the width first, then the height, rounding to
        uint8 after each pass. On CPU torch's uint8 kernel does the same (10x faster than float here) and lands
        within one level of Pillow; other devices have no uint8 kernel, so the two passes run in float32 and
        round as Pillow does (``tests/model/test_preprocess.py`` states both tolerances)."""
        if x.device.type == "cpu":
            return F.interpolate(x.contiguous(memory_format=torch.channels_last), size=size, mode=self.resample,
                                 antialias=True)
        return resize_float(x, size, self.resample)


def resize_float(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Pillow's two rounded passes (width, then height) in float32, for devices without a uint8 kernel."""
    y = x.to(torch.float32)
    for step in ((y.shape[-2], size[1]), size):
        y = F.interpolate(y, size=step, mode=mode, antialias=True).round_().clamp_(0, 255)
    return y


@dataclass(frozen=True)
class LogMelFeatures:
    """Waveforms ``[B, N]`` -> Whisper log-mel ``input_features [B, mels, frames]``, for the whole batch at once.

    Every clip is zero-padded (or cut) to the extractor's window first, as the Whisper encoder requires.
    """

    window_samples: int
    n_fft: int
    hop_length: int
    mel_filters: np.ndarray  # [n_fft // 2 + 1, mels], float32
    dither: float
    window: np.ndarray = field(init=False, repr=False)  # torch.hann_window(n_fft), periodic
    returns_mask = False

    @classmethod
    def from_hf(cls, extractor: Any) -> LogMelFeatures:
        return cls(int(extractor.n_samples), int(extractor.n_fft), int(extractor.hop_length),
                   np.asarray(extractor.mel_filters, np.float32), float(getattr(extractor, "dither", 0.0)))

    def __post_init__(self) -> None:
        # Made here, not on first use: that may come under the planner's FakeTensorMode, whose tensors cannot
        # become arrays; on CPU even inside ``on_meta``'s meta-device context.
        object.__setattr__(self, "window", torch.hann_window(self.n_fft, device="cpu").numpy())

    def __call__(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, None]:
        wave = audio[:, : self.window_samples].to(torch.float32)
        (batch, n), hop, half = wave.shape, self.hop_length, self.n_fft // 2
        frames = self.window_samples // hop  # Whisper drops the last of the STFT's 1 + window // hop frames
        # Frames that read only the window's zero padding have zero power: their log-mel is the floor's, with
        # no FFT. Clips shorter than the window (4 s clips in Whisper's 30 s) leave most frames so. Dither
        # reaches the padding too, and then every frame is computed.
        live = frames if self.dither else min(frames, -(-(n + half) // hop))
        if (live - 1) * hop + half <= self.window_samples and live < frames:
            # The live frames read up to sample (live - 1) * hop + half: the clip, zeros after it, and before it
            # the reflection that stft's centring pads the window with.
            padded = wave.new_zeros(batch, (live - 1) * hop + self.n_fft)
            padded[:, half : half + n] = wave
            padded[:, :half] = padded[:, half + 1 : 2 * half + 1].flip(-1)
        else:
            live = frames
            wave = F.pad(wave, (0, self.window_samples - n))
            if self.dither:
                wave = wave + self.dither * torch.randn_like(wave)
            padded = F.pad(wave[:, None], (half, half), mode="reflect")[:, 0]
        window = torch.from_numpy(self.window).to(wave.device)
        spectrum = torch.fft.rfft(padded.unfold(-1, self.n_fft, hop)[:, :live] * window)  # [B, live, freq]
        # |z|^2 as re^2 + im^2 (complex abs() is 4x slower on CPU), then the filterbank: one matrix product.
        squares = torch.view_as_real(spectrum).square_()
        mel = (squares[..., 0] + squares[..., 1]) @ torch.from_numpy(self.mel_filters).to(wave.device)
        log_mel = mel.clamp_(min=MEL_FLOOR).log10_()
        # The peak is a live frame's: the floor is the least value. The rest take the floor's final value.
        peak = log_mel.amax(dim=(1, 2), keepdim=True) - 8.0
        features = torch.empty((batch, frames, mel.shape[-1]), device=wave.device)
        features[:, :live] = torch.maximum(log_mel, peak).add_(4.0).div_(4.0)
        floor = torch.full_like(peak, math.log10(MEL_FLOOR))
        features[:, live:] = torch.maximum(floor, peak).add_(4.0).div_(4.0)
        return features.mT, None


@dataclass(frozen=True)
class WaveformFeatures:
    """Waveforms ``[B, N]`` + lengths -> ``input_values [B, N]`` (+ sample mask) as wav2vec2-style extractors."""

    normalize: bool
    padding_value: float
    returns_mask: bool

    @classmethod
    def from_hf(cls, extractor: Any) -> WaveformFeatures:
        return cls(bool(extractor.do_normalize), float(extractor.padding_value),
                   bool(extractor.return_attention_mask))

    def __call__(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        wave = audio.to(torch.float32)
        lengths = lengths.to(wave.device)
        mask = torch.arange(wave.shape[-1], device=wave.device)[None, :] < lengths[:, None]
        wave = torch.where(mask, wave, self.padding_value)
        if self.normalize:
            # Without an attention mask the extractor normalises over the padded clip, padding included.
            real = mask if self.returns_mask else torch.ones_like(mask)
            count = real.sum(dim=-1, keepdim=True)
            mean = (wave * real).sum(dim=-1, keepdim=True) / count
            var = ((wave - mean).square() * real).sum(dim=-1, keepdim=True) / count
            wave = (wave - mean) / torch.sqrt(var + 1e-7)
            if self.returns_mask:
                wave = torch.where(mask, wave, self.padding_value)
        return wave, mask.long() if self.returns_mask else None


def audio_features(extractor: Any) -> LogMelFeatures | WaveformFeatures:
    """The batched equivalent of an HF feature extractor: Whisper-style (a fixed window, ``n_samples``) or
    wav2vec2-style (the waveform itself)."""
    if hasattr(extractor, "n_samples"):
        return LogMelFeatures.from_hf(extractor)
    if extractor.model_input_names[0] == "input_values":
        return WaveformFeatures.from_hf(extractor)
    raise ValueError(f"{type(extractor).__name__}: no batched equivalent (Whisper log-mel or wav2vec2 waveform)")


def shaped_audio_features(encoder: Any) -> LogMelFeatures | WaveformFeatures:
    """Features of the right shapes for an encoder known only by its config (``AffectGPT.on_meta``): Whisper's
    window and mel bins with Whisper's STFT, zero filters; or the raw waveform."""
    if encoder.main_input_name == "input_features":
        n_fft, hop = 400, 160
        window = 2 * encoder.config.max_source_positions * hop  # the encoder's conv stride 2 over mel frames
        return LogMelFeatures(window, n_fft, hop, np.zeros((n_fft // 2 + 1, encoder.config.num_mel_bins),
                                                             np.float32), 0.0)
    return WaveformFeatures(normalize=False, padding_value=0.0, returns_mask=False)
