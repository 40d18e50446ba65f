"""A real Ray head for the pack-job tests: own temp dir and free ports, stopped by its pid at the end (never a
bare `ray stop`, which would stop other people's heads on this machine)."""

from __future__ import annotations

import pytest

from affectgpt.commands.ray import start_head, stop_head


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    head, _ = start_head(tmp_path_factory.mktemp("ray"), num_cpus=2)
    try:
        yield head
    finally:
        stop_head(head)
