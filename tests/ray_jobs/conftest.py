"""A real Ray head for the pack-job tests: own temp dir and free ports, stopped by its pid at the end (never a
bare `ray stop`, which would stop other people's heads on this machine)."""

from __future__ import annotations

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
