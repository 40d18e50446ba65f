import subprocess
import sys

from affectgpt.compare import collect, to_markdown, to_text
from affectgpt.run_metrics import TRAIN_LOSS, TRAIN_TOKENS_PER_S, TRAIN_WALL_S
from affectgpt.tracking import Tracker, TrackingConfig


def fill_store(root):
    """Two trained cells (two stages / one stage) and a baseline, written the way training and eval log."""
    cfg = TrackingConfig(experiment="study")
    best, last = {"selection": "best-val:avg", "selected_step": "3"}, {"selection": "last", "selected_step": "4"}
    for cell, stages, avg, selected in (("tiny/s1+s2", (1, 2), 0.6, best), ("tiny/s2", (2,), 0.5, last)):
        backbone, init = cell.split("/")
        tags = {"cell": cell, "backbone": backbone, "init": init}
        for stage in stages:
            t = Tracker.open(cfg, root, f"{cell}-stage{stage}", tags={**tags, "kind": "train", "stage": str(stage)})
            for step in range(4):
                t.log_metrics({TRAIN_LOSS: 3.0 - step * 0.5, TRAIN_TOKENS_PER_S: 100.0 * stage}, step)
            t.log_metrics({TRAIN_WALL_S: 10.0 * stage}, 4)
            t.close()
        e = Tracker.open(cfg, root, f"{cell}-eval", tags={**tags, "kind": "eval", **selected})
        e.log_metrics({"eval/avg": avg, "eval/avg_lo": avg - 0.1, "eval/avg_hi": avg + 0.1, "eval/accuracy_s": avg}, 0)
        e.close()
    b = Tracker.open(cfg, root, "constant", tags={"cell": "baseline/constant", "backbone": "-", "init": "constant",
                                                  "kind": "eval"})
    b.log_metrics({"eval/avg": 0.2}, 0)
    b.close()
    killed = Tracker.open(cfg, root, "unfinished", tags={"cell": "x/y", "kind": "eval", "backbone": "x", "init": "y"})
    killed.close("KILLED")


def test_table_from_store_alone(tmp_path):
    fill_store(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rows = collect(uri, "study")
    assert [(r.backbone, r.init) for r in rows] == [("tiny", "s1+s2"), ("tiny", "s2"), ("-", "constant")]
    best = rows[0]
    assert best.metrics["avg"] == (0.6, 0.5, 0.7)
    assert best.train_seconds == 30.0 and best.tokens_per_s == 150.0
    assert rows[2].train_seconds is None
    assert [(r.selection, r.selected_step) for r in rows] == [("best-val:avg", 3), ("last", 4), ("-", None)]
    text = to_text(rows)
    assert "0.600 [0.500, 0.700]" in text and "constant" in text
    assert "best-val:avg (step 3)" in text.splitlines()[2] and "selection" in text.splitlines()[0]
    assert to_markdown(rows).count("\n") == 4


def test_cli_writes_report(tmp_path):
    fill_store(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "affectgpt.cli", "compare", "--experiment", "study", "--store-dir", str(tmp_path)],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert "s1+s2" in out.stdout
    for name in ("compare.md", "compare.json", "compare.png"):
        assert (tmp_path / "compare" / name).stat().st_size > 0
    missing = subprocess.run(
        [sys.executable, "-m", "affectgpt.cli", "compare", "--experiment", "nope", "--store-dir", str(tmp_path)],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert missing.returncode == 1 and "no experiment 'nope'" in missing.stderr
