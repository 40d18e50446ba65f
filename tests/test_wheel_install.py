"""A non-editable install works on its own: build the wheel, install it into a fresh venv, and from a directory
outside the checkout run the CLI, build a DeepSpeed config from the packaged templates, extract labels with the
packaged lexicon and find the training entry point (``python -m affectgpt.train``, what ``deepspeed --module``
runs).

The fresh venv gets its third-party packages (torch, transformers, ...) from the test's own environment through
a ``.pth`` line, and the wheel is installed ``--no-deps``: nothing is downloaded. A path added by a ``.pth`` line
does not run that directory's own ``.pth`` files, so an editable install of the checkout there stays invisible,
and the test checks that ``affectgpt`` is imported from the new venv."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["affectgpt", "shards", "ray_jobs", "pyproject.toml", "README.md"]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """(venv python, environment without PYTHONPATH, a working dir outside the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # Build from a copy of the sources: setuptools writes build/ and *.egg-info next to pyproject.toml.
    src = tmp / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir",
          str(tmp / "dist"), str(src)], tmp, env)
    wheel = next((tmp / "dist").glob("affectgpt-*.whl"))

    target = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(target)], tmp, env)
    python = target / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp,
                        env).stdout.strip())
    (purelib / "shared-env.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
         tmp, env)
    work = tmp / "elsewhere"
    work.mkdir()
    return python, env, work


def test_the_wheel_runs_from_outside_the_checkout(venv):
    python, env, work = venv
    where = _run([str(python), "-c", "import affectgpt, shards; print(affectgpt.__file__); print(shards.__file__)"],
                 work, env).stdout.split()
    assert all(Path(p).is_relative_to(python.parents[1]) for p in where), where

    usage = _run([str(python.with_name("affectgpt")), "--help"], work, env).stdout
    assert all(command in usage for command in ("eval", "study", "export", "zoo")), usage
    for text, word in (("She smiles, she is happy.", "happy"), ("她很开心。", "happy")):  # both packaged lexicons
        labels = _run([str(python.with_name("affectgpt")), "labels", "--text", text], work, env)
        assert word in labels.stdout, labels.stdout

    script = textwrap.dedent(f"""
        from affectgpt.config import load_config
        from affectgpt.train.config import TrainConfig
        from affectgpt.train.ds_config import fill, load_template, template_path
        cfg = load_config(TrainConfig, {str(ROOT / "configs" / "stage1.yaml")!r})
        path = template_path(cfg)
        ds = fill(load_template(path), cfg, world_size=2, bf16=False, hidden_size=64)
        print(path)
        print(ds["zero_optimization"]["stage"], ds["train_batch_size"])
    """)
    path, stage_and_batch = _run([str(python), "-c", script], work, env).stdout.strip().splitlines()
    assert Path(path).is_relative_to(python.parents[1]) and stage_and_batch.split()[0] == "3"

    entry = _run([str(python), "-m", "affectgpt.train", "--help"], work, env)
    assert "--config" in entry.stdout and "deepspeed --num_gpus 2 --module affectgpt.train" in entry.stdout
