"""The pre-labelling job as users run it: `ray job submit ... -- python -m ray_jobs.prelabel` against a real
head, then the unchanged pack job on its output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ray_jobs.prelabel import main
from shards.loader import ShardLoader
from tests.prelabel.conftest import ROOT, read_csv
from tests.ray_jobs.conftest import kill_driver_after_first

BIN = Path(sys.executable).parent


def submit(head, module_args: list[str], wait: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "ray"), "job", "submit", "--address", head.dashboard_url, "--working-dir", "."]
    cmd += [] if wait else ["--no-wait"]
    return subprocess.run([*cmd, "--", "python", "-m", *module_args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def prelabel_args(corpus, out: Path, overrides: list[str]) -> list[str]:
    return ["ray_jobs.prelabel", "--corpus", str(corpus.root), "--out", str(out), "--root", str(ROOT),
            "--config", "configs/prelabel-tiny.yaml", *overrides]


@pytest.fixture(scope="module")
def labelled(ray_head, corpus, model_overrides, tmp_path_factory):
    out = tmp_path_factory.mktemp("prelabel") / "out"
    return out, submit(ray_head, prelabel_args(corpus, out, model_overrides))


@pytest.mark.integration
def test_corpus_is_labelled_end_to_end_and_broken_clips_are_recorded(labelled, corpus):
    out, job = labelled
    # Exit 3 (samples failed) makes Ray mark the job FAILED, so `ray job submit` itself exits 1.
    assert job.returncode == 1 and "exit code 3" in job.stdout, job.stdout + job.stderr
    coarse, failed = read_csv(out / "coarse.csv"), read_csv(out / "failed.csv")
    assert f"in 10 = labelled {len(coarse)} + failed {len(failed)}" in job.stdout
    reasons = {f["name"]: (f["stage"], f["reason"]) for f in failed}
    assert reasons[corpus.broken][0] == "decode" and "undecodable" in reasons[corpus.broken][1]
    assert reasons[corpus.missing][0] == "input" and "does not exist" in reasons[corpus.missing][1]
    # Every row once: labelled or failed, never both, in CSV order.
    assert sorted([r["name"] for r in coarse] + list(reasons)) == sorted(corpus.names)
    assert [r["name"] for r in coarse] == [n for n in corpus.names if n in {r["name"] for r in coarse}]
    assert len(coarse) >= 4, job.stdout
    source = {r["name"]: r["subtitle"] for r in read_csv(corpus.root / "coarse.csv")}
    for row in coarse:
        assert row["subtitle"] == source[row["name"]] and row["description"] and row["labels"]
    stages = {p.stem: [json.loads(line) for line in p.read_text().splitlines()] for p in (out / "stages").iterdir()}
    assert set(stages) == {"visual", "acoustic", "merge", "labels"}
    assert len(stages["visual"]) == len(corpus.names) - 2  # all but the missing and the undecodable clip
    assert "where the time goes" in job.stdout


@pytest.mark.integration
def test_pack_job_takes_the_output_unchanged(ray_head, labelled, tmp_path):
    out, _ = labelled
    shards = tmp_path / "shards"
    job = submit(ray_head, ["ray_jobs.pack", "--corpus", str(out), "--split", "coarse", "--out", str(shards),
                            "--samples-per-shard", "4"])
    assert job.returncode == 0, job.stdout + job.stderr
    coarse = {r["name"]: r for r in read_csv(out / "coarse.csv")}
    samples = [s for batch in ShardLoader(str(shards), batch_size=4, resampled=False) for s in batch]
    assert sorted(s["name"] for s in samples) == sorted(coarse)
    for s in samples:
        assert s["description"] == coarse[s["name"]]["description"]
        assert ",".join(s["labels"]) == coarse[s["name"]]["labels"]


@pytest.mark.integration
def test_killed_job_resumes_without_duplicates_or_gaps(ray_head, corpus, model_overrides, tmp_path):
    out = tmp_path / "out"
    # One clip per merger batch and no label requirement: parts appear one by one, every clip is labelled.
    args = prelabel_args(corpus, out, [*model_overrides, "merge.batch_size=1", "merge.max_new_tokens=12",
                                       "require_labels=false"])
    assert submit(ray_head, args, wait=False).returncode == 0
    parts = out / ".prelabel" / "parts"
    kill_driver_after_first("ray_jobs.prelabel", out, parts, "*.jsonl", timeout=180)
    kept = len(_records(parts))
    assert not (out / "coarse.csv").exists() and 0 < kept < len(corpus.names) - 1, f"not killed halfway ({kept})"

    again = submit(ray_head, args)
    assert f"{kept} kept from an earlier run" in again.stdout, again.stdout + again.stderr
    names = [r["name"] for r in _records(parts)]
    assert len(names) == len(set(names)) == len(corpus.names) - 1  # each clip done once; the missing one is input
    coarse = [r["name"] for r in read_csv(out / "coarse.csv")]
    failed = [r["name"] for r in read_csv(out / "failed.csv")]
    assert coarse == [n for n in corpus.names if n not in (corpus.broken, corpus.missing)]
    assert sorted(failed) == sorted([corpus.broken, corpus.missing])


def test_relative_paths_are_refused(tmp_path):
    assert main(["--corpus", "corpus", "--out", str(tmp_path)]) == 1


def _records(parts: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(parts.glob("*.jsonl")) for line in p.read_text().splitlines()]
