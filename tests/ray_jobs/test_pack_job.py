"""The pack job as users run it: `ray job submit ... -- python -m ray_jobs.pack` against a real head."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from affectgpt.packing import PackJobConfig
from ray_jobs.pack import main
from shards.loader import ShardLoader
from tests.ray_jobs.conftest import kill_driver_after_first
from tests.shards.faulty_corpus import make_faulty_corpus

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARGS = ["--samples-per-shard", "1", "--frames", "4", "--size", "64"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_faulty_corpus(tmp_path_factory.mktemp("corpus"), num=32, seconds=3.0, size=224)


def submit(head, corpus, out, *extra, wait=True):
    cmd = [str(BIN / "ray"), "job", "submit", "--address", head.dashboard_url, "--working-dir", "."]
    cmd += [] if wait else ["--no-wait"]
    cmd += ["--", "python", "-m", "ray_jobs.pack", "--corpus", str(corpus.root), "--split", "coarse",
            "--out", str(out), *ARGS, *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def packed(ray_head, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "coarse"
    return out, submit(ray_head, corpus, out)


@pytest.mark.integration
def test_pack_job_keeps_good_samples_and_quarantines_each_fault(packed, corpus):
    out, job = packed
    # Exit 3 (quarantined) makes Ray mark the job FAILED, so `ray job submit` itself exits 1.
    assert job.returncode == 1, job.stdout + job.stderr
    assert "in 33 = packed 27 + quarantined 6" in job.stdout and "exit code 3" in job.stdout
    with (out / "quarantine.csv").open(encoding="utf-8") as f:
        quarantine = {row["name"]: row["reason"] for row in csv.DictReader(f)}
    assert quarantine.keys() == corpus.quarantined.keys()
    assert all(fragment in quarantine[name] for name, fragment in corpus.quarantined.items())
    names = [s["name"] for batch in ShardLoader(str(out), batch_size=5, resampled=False) for s in batch]
    assert sorted(names) == sorted(corpus.good)
    verify = subprocess.run([str(BIN / "affectgpt"), "shards", "verify", str(out)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


@pytest.mark.integration
def test_the_local_head_listens_on_loopback_only(ray_head, packed):
    """GCS, raylet, dashboard, agents, Ray Client server and the job's workers: nothing on another interface."""
    import psutil

    listening = {}
    for proc in psutil.process_iter(["name"]):
        try:
            if os.getsid(proc.pid) == ray_head.pid:
                listening.update({(proc.info["name"], c.laddr.ip, c.laddr.port): c for c in
                                  proc.net_connections("inet") if c.status == psutil.CONN_LISTEN})
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    names = {name for name, _, _ in listening}
    assert {"gcs_server", "raylet"} <= names, names
    exposed = sorted(key for key in listening if key[1] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1"))
    assert not exposed, exposed


@pytest.mark.integration
def test_verify_names_the_shard_with_a_flipped_byte(packed, tmp_path):
    damaged = tmp_path / "coarse"
    shutil.copytree(packed[0], damaged)
    shard = sorted(damaged.glob("*.tar"))[3]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    verify = subprocess.run([str(BIN / "affectgpt"), "shards", "verify", str(damaged)], capture_output=True,
                            text=True)
    assert verify.returncode == 1
    assert f"{shard.name}: sha256" in verify.stderr


@pytest.mark.integration
def test_killed_job_resubmitted_yields_the_identical_shards(ray_head, corpus, packed, tmp_path):
    out = tmp_path / "coarse"
    job = submit(ray_head, corpus, out, wait=False)
    assert job.returncode == 0, job.stderr
    markers = out / ".pack"
    kill_driver_after_first("ray_jobs.pack", out, markers, "*.json", timeout=120)
    done = len(list(markers.glob("*.json")))
    total = len(list((packed[0] / ".pack").glob("*.json")))
    assert not (out / "index.json").exists() and 0 < done < total, f"not killed halfway ({done}/{total} done)"

    again = submit(ray_head, corpus, out)
    assert "kept from an earlier run" in again.stdout, again.stdout + again.stderr
    reference = json.loads((packed[0] / "index.json").read_text())
    resumed = json.loads((out / "index.json").read_text())
    assert resumed["shards"] == reference["shards"] and resumed["totals"] == reference["totals"]


def test_relative_paths_are_refused(tmp_path):
    assert main(["--corpus", "corpus", "--split", "coarse", "--out", str(tmp_path)]) == 1


@pytest.mark.integration
def test_one_job_packs_several_splits_each_into_its_own_directory(ray_head, corpus, tmp_path):
    """--split twice and an --out template: one submission, one index per split, each with its own rows."""
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "videos").symlink_to(corpus.root / "videos")
    with (corpus.root / "coarse.csv").open(encoding="utf-8", errors="surrogateescape") as f:  # a bad-UTF-8 row
        rows = [r for r in csv.DictReader(f) if r["name"] in corpus.good]
    split_rows = {"fine": rows[:3], "val": rows[3:5]}
    for split, chosen in split_rows.items():
        with (root / f"{split}.csv").open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(chosen)
    cmd = [str(BIN / "ray"), "job", "submit", "--address", ray_head.dashboard_url, "--working-dir", ".", "--",
           "python", "-m", "ray_jobs.pack", "--corpus", str(root), "--split", "fine", "--split", "val",
           "--out", str(tmp_path / "shards" / "{split}"), *ARGS]
    job = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stdout + job.stderr
    for split, chosen in split_rows.items():
        out = tmp_path / "shards" / split
        assert f"{split}: in {len(chosen)} = packed {len(chosen)} + quarantined 0" in job.stdout
        assert json.loads((out / "index.json").read_text())["split"] == split
        names = [s["name"] for batch in ShardLoader(str(out), batch_size=5, resampled=False) for s in batch]
        assert sorted(names) == sorted(r["name"] for r in chosen)


def test_several_splits_need_an_out_template():
    assert main(["--corpus", "/abs/corpus", "--split", "fine", "--split", "val", "--out", "/abs/shards"]) == 1
    with pytest.raises(ValueError, match="names a split twice"):
        PackJobConfig(corpus=Path("/c"), split=["fine", "fine"], out="/s/{split}")
    assert PackJobConfig(corpus=Path("/c"), split=["fine", "val"], out="/s/{split}").out_of("val") == "/s/val"
