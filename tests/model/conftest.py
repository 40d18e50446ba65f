"""Fixtures for the model tests: the tiny zoo (built once per session), recipes and random samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affectgpt.config import from_dict

TINY_ENTRIES = [
    "llm/llama-tiny", "llm/qwen2-tiny", "llm/mistral-tiny", "llm/gemma-tiny", "llm/phi3-tiny",
    "video/clip-tiny", "video/siglip-tiny", "audio/whisper-tiny", "audio/hubert-tiny",
]


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> Path:
    from affectgpt.model.zoo import build_zoo

    root = tmp_path_factory.mktemp("zoo")
    status = build_zoo(root, only=TINY_ENTRIES)
    assert set(status.values()) == {"built"}, status
    return root


def cached_zoo_entry(entry: str) -> Path:
    """A real LLM converted once into the repo's .cache/ (GGUF dequantisation takes 30-60 s); skipped when its
    PyPI package is not installed."""
    from affectgpt.model.zoo import build_zoo

    root = Path(__file__).resolve().parents[2] / ".cache" / "zoo"
    status = build_zoo(root, only=[entry])
    if status[entry].startswith("failed"):
        pytest.skip(status[entry])
    return root / entry


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return cached_zoo_entry("llm/smollm2-135m")


@pytest.fixture(scope="session")
def gemma3_dir() -> Path:
    return cached_zoo_entry("llm/gemma3-270m")


@pytest.fixture
def make_config(zoo):
    """``make_config(family, video=True|False|{keys}, audio=..., video_encoder=, audio_encoder=, **keys)``."""
    from affectgpt.model import AffectGPTConfig

    def make(family: str = "llama", video: bool | dict = True, audio: bool | dict = True,
             video_encoder: str = "clip-tiny", audio_encoder: str = "whisper-tiny", **keys):
        data = {"llm": str(zoo / "llm" / f"{family}-tiny"), "num_frames": 4, "max_audio_seconds": 2.0, **keys}
        if video is not False:
            data["video"] = {"encoder": str(zoo / "video" / video_encoder), "num_queries": 4,
                             **(video if isinstance(video, dict) else {})}
        if audio is not False:
            data["audio"] = {"encoder": str(zoo / "audio" / audio_encoder), "num_queries": 3,
                             **(audio if isinstance(audio, dict) else {})}
        return from_dict(AffectGPTConfig, data)

    return make


def random_sample(rng: np.random.Generator, index: int, frames: int = 4, audio_seconds: float | None = 1.0,
                  description: str | None = None) -> dict:
    """A Sample dict (docs/CONTRACTS.md) with random pixels and noise audio; ``audio_seconds=None``: no audio."""
    words = ["calm", "tense", "smiling", "frowning", "loud", "quiet", "trembling", "steady"]
    return {
        "name": f"sample_{index:08d}",
        "frames": rng.integers(0, 256, (frames, 24, 24, 3), dtype=np.uint8),
        "audio": (rng.standard_normal(int(16000 * audio_seconds)).astype(np.float32) * 0.1
                  if audio_seconds else np.zeros(0, np.float32)),
        "has_audio": audio_seconds is not None,
        "subtitle": " ".join(rng.choice(words, size=int(rng.integers(2, 12)))),
        "description": description or " ".join(rng.choice(words, size=int(rng.integers(3, 20)))) + ".",
        "labels": ["neutral"],
        "split": "coarse",
    }


@pytest.fixture
def samples():
    """``samples(n, seed=0, **kw)`` -> list of random Sample dicts of varied lengths."""

    def make(n: int, seed: int = 0, **kw) -> list[dict]:
        rng = np.random.default_rng(seed)
        return [random_sample(rng, i, **kw) for i in range(n)]

    return make
