"""One config system for every entry point: each shipped YAML under configs/ loads into its dataclass, every
entry point with settings takes ``--config FILE`` and ``key=value`` overrides, its flags are generated from
the dataclass (one default per setting), and file < flags < overrides."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from affectgpt.cli import COMMANDS, build_parser
from affectgpt.config import ConfigError, add_config_arguments, config_from_args, load_config

ROOT = Path(__file__).resolve().parents[1]

# Commands whose arguments are inputs and outputs only (paths, a URL, a port), no settings dataclass.
WITHOUT_SETTINGS = {"corpus", "ray", "shards", "zoo", "export", "serve-llm", "describe", "compare", "runs"}


def _config_classes():
    from affectgpt.eval.bench import SuiteConfig
    from affectgpt.prelabel.config import PrelabelConfig
    from affectgpt.study import StudyConfig
    from affectgpt.train.config import TrainConfig

    return {"stage1.yaml": TrainConfig, "stage2.yaml": TrainConfig, "prelabel.yaml": PrelabelConfig,
            "prelabel-tiny.yaml": PrelabelConfig, "studies": StudyConfig, "bench": SuiteConfig}


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # configs name each other (studies -> recipes) relative to the checkout
    if path.parent.name == "models":
        from affectgpt.model import hub
        from affectgpt.model.affectgpt import load_recipe

        # A recipe names model directories that `affectgpt zoo build` makes (or hub ids of shipped
        # architectures); stand-in directories let it validate on its own.
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        local = [n for n in [data["llm"], *(data[m]["encoder"] for m in ("video", "audio") if data.get(m))]
                 if not hub.is_hub_id(n)]
        for rel in local:
            (tmp_path / rel).mkdir(parents=True, exist_ok=True)
        if data.get("gguf_file"):
            (tmp_path / data["llm"] / data["gguf_file"]).touch()
        llm = load_recipe(path, tmp_path).llm
        assert str(llm) == (str((tmp_path / data["llm"]).resolve()) if data["llm"] in local else data["llm"])
        return
    classes = _config_classes()
    cls = classes.get(path.name) or classes[path.parent.name]
    assert dataclasses.is_dataclass(load_config(cls, path))


def _help(argv: list[str]) -> str:
    result = subprocess.run([sys.executable, *argv, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in WITHOUT_SETTINGS])
def test_every_command_with_settings_takes_a_config_and_overrides(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    text = sub.format_help()
    assert "key=value" in text.lower() and ("--config" in text or "--suite" in text), text


@pytest.mark.parametrize("module", ["ray_jobs.pack", "ray_jobs.prelabel", "affectgpt.train"])
def test_every_job_entry_point_takes_a_config_and_overrides(module):
    text = _help(["-m", module])
    assert "--config" in text and "key=value" in text, text


@dataclasses.dataclass
class _Section:
    """A nested section.

    depth: how deep
    """

    depth: int = 3
    names: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Settings:
    """Settings of a test command.

    out: where results go
    rate: a float setting, with a 50% sign in its help
    """

    out: Path
    rate: float = 0.5
    verbose: bool = False
    section: _Section = dataclasses.field(default_factory=_Section)
    other: _Section | None = dataclasses.field(default=None, metadata={"flag_prefix": "other-"})


def _parse(argv: list[str]) -> _Settings:
    p = argparse.ArgumentParser()
    add_config_arguments(p, _Settings)
    return config_from_args(_Settings, p.parse_args(argv))


def test_flags_are_generated_from_the_dataclass_with_its_defaults_and_help():
    p = argparse.ArgumentParser()
    add_config_arguments(p, _Settings)
    text = p.format_help()
    for line in ("--out OUT", "where results go (required)", "50% sign in its help (default: 0.5)",
                 "--verbose, --no-verbose", "--depth DEPTH", "how deep (default: 3)", "--names NAMES",
                 "--other-depth", "--config FILE", "key=value"):
        assert line in " ".join(text.split()), (line, text)


def test_an_inherited_setting_has_the_help_of_its_base_unless_restated():
    from affectgpt.config import field_docs

    @dataclasses.dataclass
    class _Deeper(_Section):
        """A section that extends another.

        names: restated here
        """

        width: int = 1

    assert field_docs(_Deeper) == {"depth": "how deep", "names": "restated here"}


def test_file_then_flags_then_overrides(tmp_path):
    config = tmp_path / "settings.yaml"
    config.write_text("out: a\nrate: 0.1\nsection: {depth: 1}\n", encoding="utf-8")
    cfg = _parse(["--config", str(config), "--rate", "0.2", "--depth", "2", "--names", "x", "--names", "y",
                  "--other-depth", "7", "--verbose", "section.depth=5"])
    assert cfg == _Settings(out=Path("a"), rate=0.2, verbose=True, section=_Section(5, ["x", "y"]),
                            other=_Section(7))
    assert _parse(["--out", "b"]) == _Settings(out=Path("b"))  # nothing given: the dataclass defaults


def test_missing_and_unknown_settings_are_named(tmp_path):
    with pytest.raises(ConfigError, match="missing setting.* out"):
        _parse([])
    with pytest.raises(ConfigError, match="unknown key.* section.width"):
        _parse(["--out", "a", "section.width=2"])


def test_generation_settings_are_declared_once():
    """Eval, the study's eval section, a bench suite and training's validation generate with the settings of
    one class (one default each, help from its docstring), and the eval command shares the study's defaults."""
    from affectgpt.commands.eval import EvalCommandConfig
    from affectgpt.config import field_docs
    from affectgpt.eval.bench import SuiteConfig
    from affectgpt.eval.generate import EvalConfig, GenerationConfig
    from affectgpt.study import StudyConfig
    from affectgpt.train.config import EvalSection

    shared = {f.name for f in dataclasses.fields(GenerationConfig)}
    assert shared == {"batch_size", "max_new_tokens", "repetition_penalty"}
    for cls in (EvalConfig, SuiteConfig, EvalSection):
        assert issubclass(cls, GenerationConfig), cls
        assert not shared & set(vars(cls).get("__annotations__", {})), f"{cls.__name__} redeclares a setting"
    assert set(field_docs(EvalConfig)) >= shared
    hints = {f.name: f for f in dataclasses.fields(StudyConfig)}
    assert hints["eval"].default_factory is EvalConfig
    assert EvalCommandConfig(model=Path("m"), shards="s", out=Path("o")).eval == EvalConfig()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["eval"]
    text = " ".join(sub.format_help().split())
    defaults = GenerationConfig()
    assert f"--max-new-tokens MAX_NEW_TOKENS description length limit (default: {defaults.max_new_tokens})" in text
    assert f"samples per generate call (default: {defaults.batch_size})" in text


def test_training_validation_generates_shorter_in_the_shipped_stage_configs():
    """The stage configs, not a second default, say that validation generates less than ``affectgpt eval``."""
    from affectgpt.eval.generate import GenerationConfig
    from affectgpt.train.config import TrainConfig

    for stage in ("stage1.yaml", "stage2.yaml"):
        cfg = load_config(TrainConfig, ROOT / "configs" / stage).eval
        assert cfg.max_new_tokens < GenerationConfig().max_new_tokens, stage
        assert cfg.batch_size < GenerationConfig().batch_size, stage
