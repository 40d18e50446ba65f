"""Fixtures shared across the suite. Nothing here reaches a model hub or the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EMER_FINE_CSV = SHARED / "data" / "emer-fine" / "final-EMER-reason.csv"


@pytest.fixture(scope="session")
def emer_fine_csv() -> Path:
    """The real EMER-Fine annotation file from ../shared (present in CI)."""
    if not EMER_FINE_CSV.is_file():
        pytest.skip(f"{EMER_FINE_CSV} is absent: this checkout has no ../shared beside it")
    return EMER_FINE_CSV


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> Path:
    """A small synthetic corpus (40 clips: coarse 28, fine 6, test 6), made once per test session."""
    from affectgpt.synth.corpus_writer import SynthConfig, write_corpus

    out = tmp_path_factory.mktemp("corpus")
    write_corpus(SynthConfig(out=out, num=40, seed=7))
    return out
