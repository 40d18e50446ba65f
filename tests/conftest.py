"""Fixtures shared across the suite. Nothing here reaches a model hub or the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from affectgpt.net import free_port

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
    """A small synthetic corpus (40 clips: coarse 28, fine 5, val 1, test 6, and the test split's discrete and
    sentiment variants), made once per test session."""
    from affectgpt.synth.corpus_writer import SynthConfig, write_corpus

    out = tmp_path_factory.mktemp("corpus")
    write_corpus(SynthConfig(out=out, num=40, seed=7, task_variants=True))
    return out


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 with its own SQLite store; yields its URI, stopped at the end."""
    import subprocess
    import sys
    import time
    import urllib.request

    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
    ]
    with (root / "server.log").open("wb") as logfile:
        proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not come up:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
