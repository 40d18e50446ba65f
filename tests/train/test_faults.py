"""Faults under the real launcher (2 CPU ranks, ZeRO-3, AffectGPT qwen2-tiny): a write that fails mid-checkpoint,
a second job on a busy checkpoint dir, ranks orphaned by a killed launcher, an MLflow server that goes away."""

from __future__ import annotations

import json
import re
import resource
import signal

import psutil
import pytest

from affectgpt.run_metrics import TRAIN_LOSS

from . import ds_launch as launch
from .ds_launch import stage1_cmd

pytestmark = pytest.mark.integration

# Above every file a training step writes here (model states ~0.6 MB, logs, metrics), below the ZeRO optimizer
# state of each rank (~5.6 MB): the next checkpoint's first large write fails.
FILE_LIMIT = 2 << 20


def limit_file_size() -> None:
    # Inherited by the launcher and both ranks. Python ignores SIGXFSZ, so an oversized write fails with EFBIG
    # and surfaces through torch.save exactly as ENOSPC does (a failed write(2) in the middle of a file).
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def test_failed_checkpoint_write_names_path_and_space_and_keeps_latest(tiny_recipe, train_shards, tmp_path):
    ckpt = tmp_path / "ckpt"
    assert launch.run(stage1_cmd(tiny_recipe, train_shards, ckpt, "max_steps=4"), tmp_path / "log1.txt",
                      timeout=300) == 0
    log = tmp_path / "log2.txt"
    rc = launch.run(stage1_cmd(tiny_recipe, train_shards, ckpt, "max_steps=8"), log, timeout=300,
                    preexec_fn=limit_file_size)
    text = log.read_text()
    assert rc != 0, text[-3000:]  # the failing job exits (tests/train/test_crash_exits.py: within seconds)
    # torch.save's own words ("basic_ios::clear: iostream error", "unexpected pos ...") name no file:
    assert re.search(rf"writing checkpoint {ckpt / 'step_00000008'} failed: .*newest file in it: "
                     rf"{ckpt / 'step_00000008'}/\S+optim_states\.pt \(\d+ bytes\); [\d.]+ GiB free of [\d.]+ GiB "
                     rf"on {ckpt}; this process may not write files larger than {FILE_LIMIT} bytes \(ulimit -f\); "
                     r"latest still names step_00000004", text), text[-3000:]
    assert (ckpt / "latest").read_text().strip() == "step_00000004"
    # The failed save is incomplete by definition; the next run resumes from the previous one and finishes.
    assert launch.run(stage1_cmd(tiny_recipe, train_shards, ckpt, "max_steps=8"), tmp_path / "log3.txt",
                      timeout=300) == 0
    assert f"resuming from {ckpt / 'step_00000004'}" in (tmp_path / "log3.txt").read_text()


def test_one_writer_per_checkpoint_dir_and_orphans_exit(tiny_recipe, train_shards, tmp_path):
    ckpt = tmp_path / "ckpt"
    first = launch.start(stage1_cmd(tiny_recipe, train_shards, ckpt, "max_steps=100000", "checkpoint.every=100000"),
                         tmp_path / "first.txt")
    job: list[psutil.Process] = []
    try:
        launch.wait_for(lambda: "step 2 train/loss" in (tmp_path / "first.txt").read_text(), timeout=300,
                        proc=first)
        job = psutil.Process(first.pid).children(recursive=True)  # node launcher, ranks, their loader workers
        (node_launcher,) = psutil.Process(first.pid).children()
        ranks = node_launcher.children()
        assert len(ranks) == 2 and all("launcher/train.py" in p.cmdline() for p in ranks)

        # A second job on the same dir (another port, as `affectgpt study` reruns) is refused, naming rank 0.
        second = tmp_path / "second.txt"
        assert launch.run(stage1_cmd(tiny_recipe, train_shards, ckpt), second, timeout=300) != 0
        holder = next(p for p in ranks if "--local_rank=0" in p.cmdline())
        assert re.search(rf"{ckpt} is in use by another training job \(host \S+, PID {holder.pid}, since ",
                         second.read_text()), second.read_text()[-3000:]

        # Killing only the `deepspeed` runner: both ranks notice, checkpoint as on preemption, and exit.
        first.send_signal(signal.SIGKILL)
        first.wait()
        _, alive = psutil.wait_procs(job, timeout=120)
        assert not alive, f"still running after the launcher died: {[p.pid for p in alive]}"
        text = (tmp_path / "first.txt").read_text()
        assert "is an orphan; stopping as on SIGTERM" in text and "stopped at step" in text, text[-3000:]
    finally:
        launch.kill_tree(first, signal.SIGKILL)
        for p in job:
            if p.is_running():
                p.kill()
    # The dir is free again: the rerun resumes from the orphans' checkpoint.
    stopped_at = (ckpt / "latest").read_text().strip()
    cmd = stage1_cmd(tiny_recipe, train_shards, ckpt, f"max_steps={int(stopped_at.removeprefix('step_')) + 2}")
    assert launch.run(cmd, tmp_path / "third.txt", timeout=300) == 0
    assert f"resuming from {ckpt / stopped_at}" in (tmp_path / "third.txt").read_text()


def test_mlflow_outage_mid_run_buffers_and_recovers(tiny_recipe, train_shards, tmp_path, own_mlflow_server):
    from mlflow import MlflowClient

    server, ckpt, log = own_mlflow_server, tmp_path / "ckpt", tmp_path / "log.txt"
    logged = ckpt / "metrics.jsonl"

    def steps() -> list[int]:
        return [json.loads(line)["step"] for line in logged.read_text().splitlines() if TRAIN_LOSS in line]

    job = launch.start(stage1_cmd(tiny_recipe, train_shards, ckpt, "max_steps=100000", "checkpoint.every=100000",
                                  "tracking.enabled=true", f"tracking.uri={server.uri}"), log)
    try:
        launch.wait_for(lambda: "step 2 train/loss" in log.read_text(), timeout=300, proc=job)
        server.stop()
        launch.wait_for(lambda: "does not answer" in log.read_text(), timeout=300, proc=job)
        during = len(steps())
        launch.wait_for(lambda: len(steps()) >= during + 3, timeout=300, proc=job)  # training goes on
        server.start()
        launch.wait_for(lambda: "answers again" in log.read_text(), timeout=300, proc=job)
        launch.kill_tree(job, signal.SIGTERM)  # preemption: checkpoint and exit; the run ends KILLED
        job.wait(timeout=120)
    finally:
        launch.kill_tree(job, signal.SIGKILL)
    text = log.read_text()
    assert "stopped at step" in text, text[-3000:]
    assert text.count("does not answer") == 1
    run_id = json.loads((ckpt / "tracking.json").read_text())["run_id"]
    client = MlflowClient(tracking_uri=server.uri)
    assert client.get_run(run_id).info.status == "KILLED"
    # Every step of metrics.jsonl reached the server once, those logged during the outage included.
    assert sorted(m.step for m in client.get_metric_history(run_id, TRAIN_LOSS)) == sorted(steps())
    assert not (ckpt / "tracking-outbox.jsonl").exists()
