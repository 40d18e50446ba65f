"""AffectGPT under DeepSpeed ZeRO-3 (one CPU rank, gloo), in a fresh process: see zero3_check.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from affectgpt.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


def run_check(zoo: Path, out: Path, *llm: Path) -> None:
    env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("zero3_check.py")), str(zoo),
                           str(out), *map(str, llm)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "ZERO3 OK" in proc.stdout, (proc.stdout + proc.stderr)[-4000:]


def test_zero3_partitions_trains_generates_and_exports(zoo, tmp_path):
    run_check(zoo, tmp_path / "export")


def test_zero3_gemma3_base_model(zoo, gemma3_dir, tmp_path):
    """The real base model without a chat template: one ZeRO-3 rank, packed == padded, trains, exports."""
    run_check(zoo, tmp_path / "export", gemma3_dir)
