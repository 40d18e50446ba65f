import pytest
from mlflow import MlflowClient

from affectgpt.tracking import Tracker, TrackingConfig


def exercise(cfg: TrackingConfig, tmp_path):
    """Start a run, log 5 steps, 'crash', reopen it and replay steps 3.. as a resumed run would."""
    first = Tracker.open(cfg, tmp_path, "stage1", params={"model.llm": "tiny", "long": "x" * 900}, tags={"stage": "1"})
    for step in range(5):
        first.log_metrics({"train/loss": 10.0 - step, "train/lr": 1e-3}, step)
    first.close("KILLED")
    resumed = Tracker.open(cfg, tmp_path, "stage1", run_id=first.run_id)
    for step in range(3, 8):
        resumed.log_metrics({"train/loss": 10.0 - step}, step)
    art = tmp_path / "metrics.json"
    art.write_text('{"accuracy_s": 0.5}')
    resumed.log_artifact(art)
    resumed.close()
    return first.run_id


def check(uri: str, run_id: str):
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.llm"] == "tiny"
    assert len(run.data.params["long"]) == 500
    assert run.data.tags["stage"] == "1" and run.data.tags["git_commit"]
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(8)), "a resumed step was logged twice or lost"
    assert [a.path for a in client.list_artifacts(run_id)] == ["metrics.json"]
    runs = client.search_runs([client.get_experiment_by_name("affectgpt").experiment_id])
    assert len(runs) == 1


def test_sqlite_store_is_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_id = exercise(TrackingConfig(), tmp_path)
    assert (tmp_path / "mlflow.db").is_file()
    assert (tmp_path / "mlartifacts").is_dir()
    check(f"sqlite:///{tmp_path / 'mlflow.db'}", run_id)


@pytest.mark.integration
def test_real_mlflow_server(mlflow_server, tmp_path):
    run_id = exercise(TrackingConfig(uri=mlflow_server), tmp_path)
    check(mlflow_server, run_id)


def test_outbox_is_bounded_for_metrics_and_skips_a_line_cut_by_a_crash(tmp_path, caplog):
    from affectgpt.tracking import Outbox

    outbox = Outbox(tmp_path / "outbox.jsonl", limit_bytes=200)
    puts = [outbox.put({"step": s, "time_ms": 0, "metrics": {"train/loss": 1.0}}) for s in range(10)]
    assert puts[0] and not puts[-1]  # metrics beyond the bound are refused ...
    assert outbox.put({"status": "FINISHED", "end_time_ms": 0})  # ... the final status never is
    with outbox.path.open("a") as f:
        f.write('{"step": 99, "ti')  # a crash in the middle of a record
    assert [r.get("step", "status") for _, r in outbox.pending()][-1] == "status"
    outbox.put({"artifact": "x", "artifact_path": None})  # the next run appends after the cut line
    assert [r.get("artifact") for _, r in outbox.pending()][-1] == "x"
    assert "skipping a damaged record" in caplog.text


def wait_until(predicate, timeout=60.0):
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def history(uri: str, run_id: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, "train/loss"))


@pytest.mark.integration
def test_outage_buffers_on_disk_and_runs_close_delivers_later(own_mlflow_server, tmp_path, caplog, monkeypatch):
    import time

    from affectgpt.cli import main as cli
    from affectgpt.tracking import OUTBOX, MlflowMetrics

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # what MlflowMetrics.open sets; undone after
    server, ckpt = own_mlflow_server, tmp_path / "ckpt"
    metrics = MlflowMetrics.open(TrackingConfig(uri=server.uri), ckpt, "stage1", params={}, tags={}, run_id=None)
    metrics.close_wait_s = 2.0
    metrics.log(1, {"train/loss": 3.0})
    wait_until(lambda: not (ckpt / OUTBOX).exists())  # delivered

    server.stop()
    started = time.monotonic()
    for step in (2, 3, 4):
        metrics.log(step, {"train/loss": 3.0 - step / 10})
    assert time.monotonic() - started < 5  # before: each call held for ~4 minutes of retries, then raised
    wait_until(lambda: "does not answer" in caplog.text)
    metrics.close("FINISHED")  # the server is still away: the records and the status wait on disk
    assert caplog.text.count("does not answer") == 1
    assert "the next run in this dir or `affectgpt runs close" in caplog.text
    assert '"status": "FINISHED"' in (ckpt / OUTBOX).read_text()

    server.start()
    assert cli(["runs", "close", str(ckpt)]) == 0
    run = MlflowClient(tracking_uri=server.uri).get_run(metrics.run_id)
    assert run.info.status == "FINISHED" and history(server.uri, metrics.run_id) == [1, 2, 3, 4]
    assert not (ckpt / OUTBOX).exists()


CRASHING_RUN = """
import os, sys, time
from pathlib import Path
from affectgpt.tracking import OUTBOX, MlflowMetrics, TrackingConfig
ckpt, uri, server_pid = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
m = MlflowMetrics.open(TrackingConfig(uri=uri), ckpt, "stage1", params={}, tags={}, run_id=None)
for step in (1, 2):
    m.log(step, {"train/loss": 1.0})
while (ckpt / OUTBOX).exists():
    time.sleep(0.1)
if server_pid:
    os.killpg(server_pid, 9)
    for step in (3, 4):
        m.log(step, {"train/loss": 1.0})
print(m.run_id, flush=True)
os._exit(9)  # kill -9: nothing is closed
"""


def crash(ckpt, server, stop_server: bool) -> str:
    import subprocess
    import sys

    pid = str(server.proc.pid if stop_server else 0)
    out = subprocess.run([sys.executable, "-c", CRASHING_RUN, str(ckpt), server.uri, pid], capture_output=True,
                         text=True, timeout=120)
    if stop_server:
        server.proc.wait()
        server.proc = None
    return out.stdout.split()[-1]


@pytest.mark.integration
def test_a_run_left_running_by_a_crash_is_closed_or_continued(own_mlflow_server, tmp_path, caplog, monkeypatch):
    from affectgpt.cli import main as cli
    from affectgpt.tracking import MlflowMetrics

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # what MlflowMetrics.open sets; undone after
    server, client = own_mlflow_server, MlflowClient(tracking_uri=own_mlflow_server.uri)
    cfg = TrackingConfig(uri=server.uri)

    # `affectgpt runs close` marks it FAILED (or --status).
    run_id = crash(tmp_path / "a", server, stop_server=False)
    assert client.get_run(run_id).info.status == "RUNNING"
    assert cli(["runs", "close", str(tmp_path / "a"), "--status", "KILLED"]) == 0
    assert client.get_run(run_id).info.status == "KILLED"

    # The next run in the same dir closes it by itself when it does not continue it (no checkpoint had its id).
    run_id = crash(tmp_path / "b", server, stop_server=False)
    fresh = MlflowMetrics.open(cfg, tmp_path / "b", "stage1", params={}, tags={}, run_id=None)
    assert client.get_run(run_id).info.status == "FAILED" and "was left RUNNING" in caplog.text
    fresh.close()

    # A resume continues it: what the crash left undelivered (steps 3, 4, logged while the server was down)
    # arrives first, so the replayed step 3 is not logged twice.
    run_id = crash(tmp_path / "c", server, stop_server=True)
    server.start()
    resumed = MlflowMetrics.open(cfg, tmp_path / "c", "stage1", params={}, tags={}, run_id=run_id)
    for step in (3, 4, 5):
        resumed.log(step, {"train/loss": 0.5})
    resumed.close()
    assert client.get_run(run_id).info.status == "FINISHED"
    assert history(server.uri, run_id) == [1, 2, 3, 4, 5]
