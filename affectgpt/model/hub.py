"""What a recipe's model names mean: a local Hugging Face directory, or a hub id such as ``Qwen/Qwen2.5-7B-Instruct``.

A hub id loads from the hub (or its cache) on a connected machine. The architecture alone (``config.json``, no
weights) of every hub id the paper recipes name ships in ``affectgpt/model/architectures/<id>/``, so meta-device
builds and ``affectgpt plan`` work offline; a local directory always wins, so a downloaded checkpoint is used
as it is.
"""

from __future__ import annotations

import re
from pathlib import Path

ARCHITECTURES = Path(__file__).resolve().parent / "architectures"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(name: str | Path) -> bool:
    """``org/name`` that is not a local directory."""
    return bool(_HUB_ID.match(str(name))) and not Path(name).is_dir()


def architecture(name: str | Path) -> str:
    """Where ``config.json`` of ``name`` is read from: the local directory, the shipped architecture of a hub
    id, or (on a connected machine) the hub id itself."""
    if is_hub_id(name) and (ARCHITECTURES / str(name) / "config.json").is_file():
        return str(ARCHITECTURES / str(name))
    return str(name)


def resolve(base: Path, name: str | Path) -> str:
    """``name`` as an absolute directory when it is one below ``base``; a hub id (or a missing directory,
    which recipe validation reports) stays as written."""
    local = base / name
    return str(local.resolve()) if local.is_dir() else str(name)
