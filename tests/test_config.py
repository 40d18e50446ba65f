from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from affectgpt.config import ConfigError, flatten, load_config, parse_overrides, to_dict


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)


@dataclass
class Run:
    name: str = "run"
    steps: int = 10
    out: Path = Path("out")
    backend: Literal["sdpa", "eager"] = "sdpa"
    init: str | None = None
    optim: Optim = field(default_factory=Optim)

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: a\noptim:\n  lr: 0.1\n")
    cfg = load_config(Run, path, ["optim.lr=3e-4", "steps=5", "out=/tmp/x", "init=null"])
    assert cfg.name == "a" and cfg.steps == 5 and cfg.optim.lr == 3e-4 and cfg.out == Path("/tmp/x")
    assert cfg.optim.betas == (0.9, 0.95) and cfg.init is None
    assert flatten(to_dict(cfg))["optim.lr"] == 3e-4


def test_unknown_key_names_file_and_path(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: 0.1\n  momentum: 0.9\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: unknown key\(s\) optim\.momentum"):
        load_config(Run, path)


@pytest.mark.parametrize(
    "override, message",
    [
        ("steps=many", "steps: expected int"),
        ("name=[1]", "name: expected str"),
        ("backend=flash", "backend: 'flash' is not one of"),
        ("steps=0", "steps must be >= 1"),
        ("optim=3", "optim: expected a mapping"),
        ("nonsense", "not of the form key=value"),
    ],
)
def test_bad_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Run, None, [override])


def test_parse_overrides_nested():
    assert parse_overrides(["a.b.c=1", "a.d=x"]) == {"a": {"b": {"c": 1}, "d": "x"}}


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Run, "/nonexistent.yaml")
