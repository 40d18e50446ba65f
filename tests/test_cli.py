import shutil
import subprocess
import sys

import pytest

from affectgpt.cli import COMMANDS

AFFECTGPT = [sys.executable, "-m", "affectgpt.cli"]


def run(*args, check=True):
    return subprocess.run([*AFFECTGPT, *args], capture_output=True, text=True, check=check, timeout=300)


def test_every_command_explains_itself():
    top = run("--help").stdout
    for name in COMMANDS:
        assert name in top
        assert len(run(name, "--help").stdout) > 200, f"{name} --help is too thin"


def test_the_command_line_parses_without_the_heavy_libraries():
    """Every `affectgpt` call builds the whole parser; importing torch there cost the calls that need no torch
    (`shards verify`, `compare`, `ray up`) ~5 s each before they did anything."""
    probe = ("import sys; from affectgpt.cli import build_parser; build_parser(); "
             "print(sorted(m for m in ('torch', 'deepspeed', 'transformers', 'ray', 'mlflow') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          timeout=120).stdout.strip() == "[]"


def test_synth_then_check(tmp_path):
    out = tmp_path / "c"
    result = run("synth", "--out", str(out), "--num", "10", "--seed", "1")
    assert "wrote 10 clips" in result.stderr
    assert len(list((out / "videos").glob("*.mp4"))) == 10
    check = run("corpus", "check", str(out))
    assert "coarse: 6 rows = 6 ok + 0 bad" in check.stderr


def test_check_reports_broken_corpus(synth_corpus, tmp_path):
    corpus = tmp_path / "broken"
    shutil.copytree(synth_corpus, corpus)
    fine_names = (corpus / "fine.csv").read_text().splitlines()[1:3]
    first, second = (line.split(",")[0] for line in fine_names)
    (corpus / "videos" / f"{first}.mp4").unlink()
    (corpus / "videos" / f"{second}.mp4").write_bytes(b"garbage")
    result = run("corpus", "check", str(corpus), "--split", "fine", check=False)
    assert result.returncode == 1
    assert f"fine/{first}: row 2: video" in result.stderr
    assert f"fine/{second}: undecodable" in result.stderr
    assert "fine: 5 rows = 3 ok + 2 bad" in result.stderr


@pytest.mark.parametrize("argv", [["synth"], ["corpus", "check"], ["nonsense"]])
def test_usage_errors_exit_2(argv):
    assert run(*argv, check=False).returncode == 2
