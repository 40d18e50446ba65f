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
    write_corpus(SynthConfig(out=out, num=40, seed=7, fine_fraction=0.15, task_variants=True))
    return out


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 with its own SQLite store. ``stop`` it (by PID) and ``start`` it again
    on the same port and store to play an outage."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> None:
        import subprocess
        import sys
        import time
        import urllib.request

        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        cmd = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers",
            "1", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
        ]
        with (self.root / "server.log").open("ab") as logfile:
            self.proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + 240  # a loaded CI machine starts it slowly
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server did not come up:\n{(self.root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Kill the server's process group (it forks workers) at once, as a crash or a lost network would."""
        import signal

        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` shared by the session; yields its URI."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def own_mlflow_server(tmp_path_factory):
    """A real `mlflow server` for one test, which may stop and restart it."""
    server = MlflowServer(tmp_path_factory.mktemp("own-mlflow-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
