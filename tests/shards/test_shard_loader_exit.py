"""Loader workers and signals: a SIGTERM to the whole process tree (preemption) leaves the workers serving the
training process, and a training process that fails while its workers run exits instead of waiting for them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from shards.loader import ShardLoader

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_sigterm_from_another_process_leaves_workers_serving(tmp_path, make_shards):
    make_shards(tmp_path, [4, 4, 4, 4])
    loader = ShardLoader(str(tmp_path), 1, num_workers=2, resampled=False)
    others = set(psutil.Process().children())  # e.g. a session fixture's mlflow server
    it = iter(loader)
    next(it)
    workers = [c for c in psutil.Process().children() if c not in others]
    assert len(workers) == 2
    for worker in workers:  # sent by `kill`, as a scheduler or the deepspeed launcher would
        subprocess.run(["kill", "-TERM", str(worker.pid)], check=True)
    time.sleep(0.5)  # give a worker that would die time to die; the assertion below is what fails if one did
    assert all(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    assert len(list(it)) == 15


def _run(code: str, shards: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(f"""
        import sys
        from shards.loader import ShardLoader
        it = iter(ShardLoader({shards!r}, 1, num_workers=2))
        next(it)  # the workers run, the epoch is half read, and `it` stays referenced to the end
    """) + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.integration
def test_a_failing_process_exits_although_its_workers_ignore_group_sigterm(tmp_path, make_shards):
    make_shards(tmp_path, [4, 4, 4, 4])
    failed = _run('raise RuntimeError("the training step failed")', str(tmp_path))
    assert failed.returncode == 1 and "the training step failed" in failed.stderr
    assert _run("print('done')", str(tmp_path)).returncode == 0  # a normal end with an epoch half read


@pytest.mark.integration
def test_workers_exit_when_the_training_process_is_killed(tmp_path, make_shards):
    make_shards(tmp_path, [4, 4, 4, 4])
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from shards.loader import ShardLoader
        it = iter(ShardLoader({str(tmp_path)!r}, 1, num_workers=2))
        next(it)
        print("running", flush=True)
        time.sleep(600)
    """)], env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        gone, alive = psutil.wait_procs(workers, timeout=60)  # torch's watchdog looks every 5 s
        assert not alive
    finally:
        proc.kill()
