"""Import rules of the layout, read from the source (every import statement, including those inside functions):
``shards`` is the format and stands alone; the model library does not depend on training or evaluation; the
``affectgpt`` package does not reach into the checkout's ``launcher/`` or the Ray jobs that drive it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RULES = [
    # (package directory, forbidden module prefixes)
    ("shards", ("affectgpt", "ray_jobs", "launcher", "ray")),
    ("affectgpt/model", ("affectgpt.train", "affectgpt.eval", "affectgpt.prelabel", "affectgpt.study")),
    ("affectgpt", ("launcher", "ray_jobs")),
]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``; relative imports resolved against the file's package."""
    package = path.relative_to(ROOT).parent.parts
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.append((node.lineno, module))
    return found


def violations(directory: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((ROOT / directory).rglob("*.py")):
        for line, module in imported_modules(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return out


@pytest.mark.parametrize(("directory", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_import_rule(directory, forbidden):
    assert violations(directory, forbidden) == []


def test_the_rule_sees_imports_inside_functions_and_relative_ones(tmp_path, monkeypatch):
    package = tmp_path / "shards"
    package.mkdir()
    (package / "bad.py").write_text("def f():\n    from affectgpt.config import from_dict\n"
                                    "    import ray\n", encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert violations("shards", ("affectgpt", "ray")) == ["shards/bad.py:2 imports affectgpt.config",
                                                          "shards/bad.py:3 imports ray"]
