"""Every ``affectgpt`` command ``scripts/demo.sh`` runs parses with today's CLI: a renamed flag fails here,
in seconds, instead of at the demo's sixth stage an hour in."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from affectgpt.cli import build_parser

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.sh"
NUMBERS = {"CLIPS": "600"}  # variables the script uses as numbers; every other one stands for a path


def demo_commands() -> list[str]:
    """The script's ``$AG ...`` command lines, continuation lines joined, shell variables given stand-ins."""
    text = DEMO.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    commands = [line.removeprefix("$AG ").split("||")[0] for line in lines if line.startswith("$AG ")]
    return [re.sub(r"\$\{?(\w+)\}?", lambda m: NUMBERS.get(m[1], f"/stand-in/{m[1]}"), cmd) for cmd in commands]


def test_the_demo_runs_affectgpt_commands():
    assert {cmd.split()[0] for cmd in demo_commands()} >= {"synth", "study", "compare", "bench"}


@pytest.mark.parametrize("command", demo_commands(), ids=lambda c: " ".join(c.split()[:2]))
def test_every_demo_command_parses(command):
    build_parser().parse_args(shlex.split(command))  # argparse exits (SystemExit) on an unknown flag
