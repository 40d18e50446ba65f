"""Fixtures for the pre-labelling tests: the local zoo, a describer model dir, a corpus with broken clips, and
the Ray head fixture of the pack-job tests."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ray_jobs.conftest import ray_head  # noqa: F401 - a fixture, used by name

ROOT = Path(__file__).resolve().parents[2]
ZOO_ENTRIES = ["llm/llama-tiny", "video/clip-tiny", "audio/whisper-tiny", "llm/smollm2-135m"]


@pytest.fixture(scope="session")
def zoo() -> Path:
    """The zoo entries these tests use, in the repo's .cache/ (shared with the model tests: SmolLM2's
    conversion takes ~30 s once)."""
    from affectgpt.model.zoo import build_zoo

    root = ROOT / ".cache" / "zoo"
    status = build_zoo(root, only=ZOO_ENTRIES)
    failed = {k: v for k, v in status.items() if v.startswith("failed")}
    if failed:
        pytest.skip(f"zoo entries cannot be built here: {failed}")
    return root


@pytest.fixture(scope="session")
def describer(zoo, tmp_path_factory) -> Path:
    """An AffectGPT model dir (untrained adapters) with the llama-tiny recipe's shapes."""
    import torch

    from affectgpt.config import from_dict
    from affectgpt.model import AffectGPT, AffectGPTConfig

    torch.manual_seed(0)
    cfg = from_dict(AffectGPTConfig, {
        "llm": str(zoo / "llm" / "llama-tiny"), "max_audio_seconds": 4.0,
        "video": {"encoder": str(zoo / "video" / "clip-tiny"), "num_queries": 4},
        "audio": {"encoder": str(zoo / "audio" / "whisper-tiny"), "num_queries": 4},
    })
    out = tmp_path_factory.mktemp("describer") / "model"
    AffectGPT.from_config(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def model_overrides(zoo, describer) -> list[str]:
    """`key=value` overrides of configs/prelabel-tiny.yaml that point every stage at the test models."""
    return [f"visual.model={describer}", f"acoustic.model={describer}",
            f"merge.model={zoo / 'llm' / 'smollm2-135m'}"]


@dataclass(frozen=True)
class Corpus:
    root: Path
    names: list[str]  # CSV order
    broken: str  # a truncated video: fails at decode
    missing: str  # a row whose video is gone: fails at input


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Corpus:
    from affectgpt.synth.corpus_writer import SynthConfig, write_corpus

    root = tmp_path_factory.mktemp("corpus")
    write_corpus(SynthConfig(out=root, num=10, seed=3, fine_fraction=0, test_fraction=0))
    with (root / "coarse.csv").open(encoding="utf-8") as f:
        names = [row["name"] for row in csv.DictReader(f)]
    broken, missing = names[1], names[4]
    video = root / "videos" / f"{broken}.mp4"
    video.write_bytes(video.read_bytes()[:2000])
    (root / "videos" / f"{missing}.mp4").unlink()
    return Corpus(root, names, broken, missing)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))
