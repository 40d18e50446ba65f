"""benchmarks/gpu_check.sh --dry-run: the GPU check's steps on CPU at toy size (bf16 training padded and packed,
packed == padded, backend selection, generation, the table), so the script a GPU session runs is known to work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_dry_run_writes_the_table(tmp_path):
    from affectgpt.model.zoo import build_zoo

    zoo = tmp_path / "models"
    build_zoo(zoo, only=["llm/qwen2-tiny", "video/clip-tiny", "audio/whisper-tiny"], seed=0)
    env = {**os.environ, "ZOO": str(zoo), "OUT": str(tmp_path / "out"), "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["env"]["dry_run"] and report["env"]["attention"] == "sdpa"
    assert [r["model"] for r in report["rows"]] == ["tiny", "toy-llm"]
    for row in report["rows"]:
        assert row["packed_equals_padded"] and row["generated"], row
        assert row["packed_row_tokens"] < row["padded_row_tokens"]  # the batch's rows differ in length
        assert row["padded_tokens_per_s"] > 0 and 0 < row["padded_mfu"] < 1
    table = (tmp_path / "out" / "gpu_check.md").read_text()
    assert table in proc.stdout and "| tiny |" in table


def test_missing_zoo_is_named(tmp_path):
    env = {**os.environ, "ZOO": str(tmp_path / "nothing"), "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "llm/qwen2-tiny is missing" in proc.stderr
