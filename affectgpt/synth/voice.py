"""A voice-like signal whose prosody carries the emotion: pitch level and contour, loudness, speaking rate and
tremor. Syllables are harmonic tones shaped by random vowel formants, separated by short pauses."""

from __future__ import annotations

import numpy as np

from affectgpt.synth.emotions import Cues


def synthesize_voice(
    cues: Cues, pitch_offset: float, seconds: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Mono float32 in [-1, 1], ``seconds`` long."""
    n = int(seconds * sample_rate)
    out = np.zeros(n, np.float32)
    period = 1.0 / cues.rate
    start = rng.uniform(0.05, 0.3)
    while start < seconds - 0.1:
        length = period * rng.uniform(0.55, 0.85)
        s0, s1 = int(start * sample_rate), min(n, int((start + length) * sample_rate))
        out[s0:s1] += _syllable(cues, pitch_offset, s1 - s0, sample_rate, rng)
        start += period * rng.uniform(0.85, 1.25)
    out += rng.normal(0, 0.004, n).astype(np.float32)  # room noise
    return np.clip(out, -1, 1)


def _syllable(cues: Cues, pitch_offset: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    tau = np.linspace(0, 1, n, dtype=np.float32)
    t = np.arange(n, dtype=np.float32) / sr
    f0 = cues.pitch * pitch_offset * rng.uniform(0.93, 1.07) * 2.0 ** (cues.contour * (tau - 0.5))
    f0 = f0 * (1 + cues.tremor * np.sin(2 * np.pi * rng.uniform(5, 8) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    formants = (rng.uniform(300, 850), rng.uniform(900, 2300))
    wave = np.zeros(n, np.float32)
    f_mean = float(f0.mean())
    for k in range(1, 13):
        fk = k * f_mean
        weight = sum(np.exp(-(((fk - f) / 250.0) ** 2)) for f in formants) + 0.15 / k
        wave += weight * np.sin(k * phase)
    envelope = np.clip(np.sin(np.pi * tau), 0, 1) ** 0.6
    wave *= envelope / (np.abs(wave).max() + 1e-6)
    return (0.1 + 0.5 * cues.energy) * wave
