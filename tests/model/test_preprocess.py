"""The model's batched preprocessing computes what the Hugging Face processors compute, within stated tolerances.

- Frames (CLIP, SigLIP): different on at most 1 % of the values, by at most one 8-bit level before normalisation
  (``rescale / std`` after it) when downscaling, the usual case, and two when upscaling; frames already at the
  encoder's size: within 1e-5. The float path of devices without a uint8 resize kernel is closer still.
- Whisper log-mel: within 1e-5 (the same STFT and filterbank, batched; the frames of zero padding filled in).
- wav2vec2/HuBERT waveform normalisation, with and without an attention mask: within 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as tf

from affectgpt.model.preprocess import FramePreprocessor, audio_features, resize_float

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def _frames(shape, seed=0):
    """Smooth images with noise (like video frames, unlike pure noise) as uint8 [B, T, H, W, 3]."""
    rng = np.random.default_rng(seed)
    *lead, h, w, _ = shape
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * x + c) * np.cos(4 * y - c) for c in range(3)], -1) * 100 + 128
    noisy = base + rng.normal(0, 20, (*lead, h, w, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _hf_pixels(processor, frames):
    flat = list(frames.reshape(-1, *frames.shape[-3:]))
    pixels = processor(images=flat, return_tensors="pt", input_data_format="channels_last")["pixel_values"]
    return pixels.reshape(*frames.shape[:-3], *pixels.shape[1:])


PROCESSORS = {
    "clip-tiny": lambda: tf.CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
    "clip-224": lambda: tf.CLIPImageProcessorPil(),  # openai/clip-vit-*: shortest edge 224, crop 224
    "siglip-tiny": lambda: tf.SiglipImageProcessorPil(size={"height": 32, "width": 32}),
    "siglip-224": lambda: tf.SiglipImageProcessorPil(size={"height": 224, "width": 224}),
}


@pytest.mark.parametrize("name", sorted(PROCESSORS))
@pytest.mark.parametrize("shape", [(2, 3, 224, 224, 3), (2, 3, 24, 24, 3), (1, 2, 48, 80, 3)])
def test_frames_match_the_image_processor(name, shape):
    processor = PROCESSORS[name]()
    frames = _frames(shape)
    expected = _hf_pixels(processor, frames)
    got = FramePreprocessor.from_hf(processor)(torch.from_numpy(frames))
    assert got.shape == expected.shape and got.dtype == torch.float32
    diff = (got - expected).abs()
    one_level = processor.rescale_factor / torch.tensor(processor.image_std).min()
    if shape[-3:-1] == (expected.shape[-2], expected.shape[-1]) and name.endswith("224"):
        assert diff.max() < 1e-5  # no resize: only the normalisation
    levels = 1 if shape[-3] >= expected.shape[-2] else 2  # downscaling (the usual case) or upscaling
    assert diff.max() <= levels * one_level + 1e-5
    assert (diff > 1e-5).float().mean() <= 0.01


def test_float_resize_is_pillows():
    """The two rounded passes that devices without a uint8 kernel run are Pillow's uint8 resize, but for the
    fixed-point rounding of Pillow's weights (one level on a few values in 10^4)."""
    processor = tf.CLIPImageProcessorPil(size={"shortest_edge": 32}, do_center_crop=False, do_rescale=False,
                                         do_normalize=False)
    frames = _frames((6, 224, 224, 3))
    expected = _hf_pixels(processor, frames)
    diff = (resize_float(torch.from_numpy(frames).permute(0, 3, 1, 2), (32, 32), "bicubic") - expected).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() <= 0.001


def test_frames_in_the_encoder_dtype():
    pre = FramePreprocessor.from_hf(PROCESSORS["siglip-tiny"]())
    assert pre(torch.from_numpy(_frames((1, 2, 32, 32, 3))), torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="uint8"):
        pre(torch.zeros(1, 2, 32, 32, 3))


def test_unsupported_processors_are_refused():
    with pytest.raises(ValueError, match="resample"):
        FramePreprocessor.from_hf(tf.CLIPImageProcessorPil(resample=1))  # Lanczos
    with pytest.raises(ValueError, match="size"):
        FramePreprocessor.from_hf(tf.CLIPImageProcessorPil(size={"longest_edge": 64}))


def _waves(lengths, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(max(lengths)) / 16000
    return [(0.3 * np.sin(2 * np.pi * (150 + 50 * i) * t[:n]) + 0.05 * rng.standard_normal(n)).astype(np.float32)
            for i, n in enumerate(lengths)]


def _batch(waves):
    audio = torch.zeros(len(waves), max(len(w) for w in waves))
    for i, w in enumerate(waves):
        audio[i, : len(w)] = torch.from_numpy(w)
    return audio, torch.tensor([len(w) for w in waves])


EXTRACTORS = {
    "whisper": lambda: tf.WhisperFeatureExtractor(feature_size=80, chunk_length=4),
    "whisper-30s-128": lambda: tf.WhisperFeatureExtractor(feature_size=128),  # whisper-large-v3
    "hubert": lambda: tf.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True),
    "wav2vec2-base": lambda: tf.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False),
    "raw": lambda: tf.Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True),
}


# Clips shorter and longer than Whisper's 4 s window; a batch that ends short of the window (only its live
# frames are transformed), or just short of it (the clip's end is within one STFT window of the window's end); and
# a missing track (the collator's 0.1 s of silence).
LENGTHS = {"some longer": [16000, 48000, 1600, 70000], "all shorter": [16000, 48000, 1600],
           "near the window's edge": [63500, 8000], "to the window's edge": [63900, 8000], "silence": [1600]}


@pytest.mark.parametrize("lengths", list(LENGTHS), ids=list(LENGTHS))
@pytest.mark.parametrize("name", sorted(EXTRACTORS))
def test_audio_matches_the_feature_extractor(name, lengths):
    extractor = EXTRACTORS[name]()
    waves = _waves(LENGTHS[lengths]) if lengths != "silence" else [np.zeros(1600, np.float32)]
    padding = {} if hasattr(extractor, "n_samples") else {"padding": "longest"}
    expected = extractor(waves, sampling_rate=16000, return_tensors="pt", **padding)
    values, mask = audio_features(extractor)(*_batch(waves))
    reference = expected[extractor.model_input_names[0]]
    assert values.shape == reference.shape
    torch.testing.assert_close(values, reference, atol=1e-5, rtol=0)
    if "attention_mask" in expected:
        assert torch.equal(mask, expected["attention_mask"].long())
    else:
        assert mask is None
