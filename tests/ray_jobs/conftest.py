"""A real Ray head for the pack-job tests: own temp dir and free ports, stopped by its pid at the end (never a
bare `ray stop`, which would stop other people's heads on this machine)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from affectgpt.commands.ray import start_head, stop_head


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    head, _ = start_head(tmp_path_factory.mktemp("ray"), num_cpus=2)
    try:
        yield head
    finally:
        stop_head(head)


def job_driver_pids(module: str, out: Path) -> list[int]:
    """PIDs of the driver processes of a `python -m <module> ... <out>` Ray job (not the `ray job` client)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if module.encode() in argv and str(out).encode() in argv and b"job" not in argv:
            pids.append(int(proc.name))
    return pids


def kill_driver_after_first(module: str, out: Path, progress: Path, pattern: str, timeout: float) -> None:
    """Wait until the job has persisted its first unit of work (a ``pattern`` file in ``progress``), then
    SIGKILL its driver, found by its unique ``out``: the job dies midway, as a preempted one would."""
    deadline = time.monotonic() + timeout
    while not (progress.is_dir() and any(progress.glob(pattern))):
        assert time.monotonic() < deadline, f"{module} persisted nothing in {timeout:.0f} s"
        time.sleep(0.01)
    for pid in job_driver_pids(module, out):
        os.kill(pid, signal.SIGKILL)
