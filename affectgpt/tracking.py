"""MLflow tracking: one MLflow run per training stage or evaluation, written by rank 0 only.

Where runs go: ``TrackingConfig.uri`` if set, else ``$MLFLOW_TRACKING_URI``, else a SQLite store
``<default_dir>/mlflow.db`` (no server needed; ``make mlflow-ui`` browses it). Artifacts of a SQLite store go
to ``<default_dir>/mlartifacts``, beside the database, rather than wherever the process happens to run.

Resuming: a training run stores ``Tracker.run_id`` in its checkpoints and reopens the same run after a restart.
Steps that were logged before the interruption and are replayed after it are not logged twice: the tracker
reads the highest step already recorded for each metric and drops that metric at or below it (per metric, so
a kill between a step's training and evaluation metrics loses neither).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectgpt.atomic import write_atomic

log = logging.getLogger(__name__)

# MLflow limits: 500 characters per param value, 100 params and 1000 metrics per batch call.
_PARAM_VALUE_LIMIT = 500
_PARAM_BATCH = 100
_METRIC_BATCH = 1000


@dataclass
class TrackingConfig:
    """Where runs are recorded.

    enabled: record MLflow runs
    uri: MLflow tracking URI (none: $MLFLOW_TRACKING_URI, else sqlite:///<output dir>/mlflow.db)
    experiment: MLflow experiment
    """

    enabled: bool = True
    uri: str | None = None
    experiment: str = "affectgpt"

    def resolve_uri(self, default_dir: str | Path) -> str:
        if self.uri:
            return self.uri
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        path = Path(default_dir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path / 'mlflow.db'}"


class Tracker:
    """An open MLflow run. Create with ``Tracker.open``; every method is cheap to call per step."""

    def __init__(self, client, run_id: str, logged_through: dict[str, int] | None = None):
        self.client = client
        self.run_id = run_id
        self.logged_through = logged_through or {}  # metric -> highest step already recorded
        self._buffer: list[Any] = []

    @classmethod
    def open(
        cls,
        cfg: TrackingConfig,
        default_dir: str | Path,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        run_id: str | None = None,
        inputs: Mapping[str, str | Path] | None = None,
    ) -> Tracker:
        """Start a run, or reopen ``run_id`` (a resumed training run) and mark it running again. ``inputs``
        maps a context (train, validation, test) to the shard directory the run reads there."""
        from mlflow import MlflowClient

        uri = cfg.resolve_uri(default_dir)
        client = MlflowClient(tracking_uri=uri)
        if run_id:
            client.update_run(run_id, status="RUNNING")
            logged = {key: max((m.step for m in client.get_metric_history(run_id, key)), default=-1)
                      for key in client.get_run(run_id).data.metrics}
            log.info("MLflow: resuming run %s (%s); steps <= %d already logged", run_id, uri,
                     max(logged.values(), default=-1))
            tracker = cls(client, run_id, logged)
        else:
            experiment_id = _experiment_id(client, cfg.experiment, uri)
            all_tags = {"git_commit": git_commit(), **(tags or {})}
            run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
            log.info("MLflow: run %s '%s' in experiment '%s' at %s", run.info.run_id, run_name, cfg.experiment, uri)
            tracker = cls(client, run.info.run_id)
            tracker.log_params(params or {})
            for context, directory in (inputs or {}).items():
                tracker.log_shards(directory, context)
        return tracker

    def log_shards(self, directory: str | Path, context: str) -> None:
        """A shard split as one of the run's MLflow dataset inputs: the UI's Dataset column shows its name,
        digest and size, so runs that read different data are told apart at a glance."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        from shards import storage
        from shards.index import read_index

        index = read_index(str(directory))
        fs, _ = storage.location(str(directory))
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        dataset = Dataset(
            name=index.split, digest=index.digest[:16], source_type="local" if protocol == "file" else protocol,
            source=json.dumps({"uri": str(directory)}),
            profile=json.dumps({"num_rows": index.samples, "shards": len(index.shards), "bytes": index.bytes}),
        )
        tag = InputTag("mlflow.data.context", context)
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset, [tag])])

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _PARAM_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer metrics of one step; flushed every ``_METRIC_BATCH`` values and on ``flush``/``close``."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), now, step) for k, v in metrics.items()
                            if step > self.logged_through.get(k, -1))
        if len(self._buffer) >= _METRIC_BATCH:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self._buffer), _METRIC_BATCH):
            self.client.log_batch(self.run_id, metrics=self._buffer[i : i + _METRIC_BATCH])
        self._buffer.clear()

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def close(self, status: str = "FINISHED") -> None:
        self.flush()
        self.client.set_terminated(self.run_id, status=status)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def _experiment_id(client, name: str, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = None
    if uri.startswith("sqlite:///"):
        artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifacts)
    except Exception:  # another process created it between our lookup and create
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _PARAM_VALUE_LIMIT else text[: _PARAM_VALUE_LIMIT - 3] + "..."


OUTBOX = "tracking-outbox.jsonl"
RUN_FILE = "tracking.json"
_RETRY_S = 5.0  # between attempts while the server does not answer
_OUTBOX_LIMIT_BYTES = 64 << 20


class Outbox:
    """Records on their way to the tracking server, in order, in a JSON-lines file (``tracking-outbox.jsonl``
    beside ``metrics.jsonl``): appended by the training loop, removed once the server has them.

    A record is ``{"step", "time_ms", "metrics"}``, ``{"artifact", "artifact_path"}``, ``{"tags"}`` or
    ``{"status", "end_time_ms"}``. Records are sent again after a crash between sending and removal; that is
    harmless, as MLflow keeps one copy of a metric with the same key, step, timestamp and value. Metrics are
    refused once the file holds ``limit_bytes`` (they stay in ``metrics.jsonl``); artifacts, tags and the final
    status never are.
    """

    def __init__(self, path: Path, limit_bytes: int = _OUTBOX_LIMIT_BYTES):
        self.path, self.limit_bytes = path, limit_bytes
        self._lock = threading.Lock()
        self._sent = 0  # byte offset of the first record the server does not have yet

    def put(self, record: dict[str, Any]) -> bool:
        line = json.dumps(record).encode() + b"\n"
        with self._lock:
            size = self.path.stat().st_size if self.path.exists() else 0
            if "metrics" in record and size >= self.limit_bytes:
                return False
            with self.path.open("a+b") as f:
                if size:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        line = b"\n" + line  # end a line a crash cut short, so this record stays whole
                f.write(line)
        return True

    def pending(self) -> list[tuple[int, dict[str, Any]]]:
        """(end offset, record) of every complete record not yet sent; a line cut by a crash is ignored."""
        with self._lock:
            if not self.path.exists():
                return []
            with self.path.open("rb") as f:
                f.seek(self._sent)
                data = f.read()
        out, offset = [], self._sent
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # being written, or cut by a crash
            offset += len(line)
            try:
                out.append((offset, json.loads(line)))
            except json.JSONDecodeError:  # a line cut by a crash, with the next run's first record after it
                log.warning("%s: skipping a damaged record at byte %d", self.path, offset - len(line))
        return out

    def sent_through(self, offset: int) -> None:
        with self._lock:
            self._sent = offset
            if self.path.exists() and self.path.stat().st_size == offset:
                self.path.unlink()  # everything delivered
                self._sent = 0

    def send(self, client: Any, run_id: str) -> int:
        """Deliver every pending record to ``run_id``, oldest first; raises on the first failure (what was
        delivered before it is removed). Returns the number of records delivered."""
        from mlflow.entities import Metric

        done, batch, batch_end = 0, [], 0

        def send_batch() -> None:
            nonlocal batch
            if batch:
                client.log_batch(run_id, metrics=batch)
                self.sent_through(batch_end)
                batch = []

        for end, record in self.pending():
            if "metrics" in record:
                metrics = [Metric(k, float(v), record["time_ms"], record["step"]) for k, v in record["metrics"].items()]
                if len(batch) + len(metrics) > _METRIC_BATCH:
                    send_batch()
                batch, batch_end = batch + metrics, end
            else:
                send_batch()
                if "artifact" in record:
                    client.log_artifact(run_id, record["artifact"], record.get("artifact_path"))
                elif "tags" in record:
                    for key, value in record["tags"].items():
                        client.set_tag(run_id, key, value)
                else:
                    client.set_terminated(run_id, status=record["status"], end_time=record["end_time_ms"])
                self.sent_through(end)
            done += 1
        send_batch()
        return done


class MlflowMetrics:
    """The training loop's metrics hook (``affectgpt.train.metrics.MetricsLogger``) backed by an MLflow run,
    that never blocks or stops training: ``log``, ``log_artifact``, ``set_tags`` and ``close`` put records in the
    ``Outbox`` and a background thread delivers them. When the server does not answer, the thread warns once,
    keeps the records on disk, retries every few seconds and delivers them in order when the server is back. At the end
    ``close`` waits up to ``close_wait_s`` for the outbox to drain; if the server is still away the records (and
    the run's final status) stay on disk, and the next training run in the same dir or ``affectgpt runs close
    DIR`` delivers them.

    ``run_id`` is what the checkpoint stores; passing it back on resume reopens the same run. ``RUN_FILE``
    beside the outbox names the run and the server, for recovery by a later command.
    """

    close_wait_s = 30.0  # at the end of a run, for the outbox to drain before leaving it on disk

    def __init__(self, tracker: Tracker, directory: Path, uri: str):
        self._tracker, self.run_id, self._uri = tracker, tracker.run_id, uri
        self._outbox = Outbox(directory / OUTBOX)
        self._dropped = 0
        self._wake, self._closing = threading.Event(), False
        self._thread = threading.Thread(target=self._deliver, name="mlflow-outbox", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, cfg: TrackingConfig, directory: Path, run_name: str, params: Mapping[str, Any],
             tags: Mapping[str, str], run_id: str | None,
             inputs: Mapping[str, str | Path] | None = None) -> MlflowMetrics:
        """Deliver what a previous run in ``directory`` left behind (closing it as FAILED if it crashed and is
        not the run being continued), then open or reopen the run."""
        # The outbox retries on its own: MLflow's default of 7 retries with backoff holds each call for ~4
        # minutes when the server is away, which would delay the warning, the recovery, and the start-up error
        # (a server that does not answer at start fails the run at once). An explicit setting is respected.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        recover(directory, continuing=run_id)
        uri = cfg.resolve_uri(directory.parent)
        tracker = Tracker.open(cfg, directory.parent, run_name=run_name, params=params, tags=tags, run_id=run_id,
                               inputs=inputs)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / RUN_FILE, json.dumps({"uri": uri, "run_id": tracker.run_id}) + "\n", durable=True)
        return cls(tracker, directory, uri)

    def log(self, step: int, values: dict[str, float]) -> None:
        values = {k: v for k, v in values.items() if step > self._tracker.logged_through.get(k, -1)}
        if not values:
            return  # replayed after a restart: the run has it
        record = {"step": step, "time_ms": int(time.time() * 1000), "metrics": values}
        if not self._outbox.put(record):
            if not self._dropped:
                log.warning("MLflow outbox %s is full (%d MiB) at step %d: metrics are left out of it until the "
                            "server takes the backlog (metrics.jsonl keeps them all)", self._outbox.path,
                            self._outbox.limit_bytes >> 20, step)
            self._dropped += 1
        self._wake.set()

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._outbox.put({"artifact": str(Path(path).resolve()), "artifact_path": artifact_path})
        self._wake.set()

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._outbox.put({"tags": {k: str(v) for k, v in tags.items()}})
        self._wake.set()

    def close(self, status: str = "FINISHED") -> None:
        if self._dropped:
            log.warning("%d metric records did not fit the MLflow outbox: they are only in metrics.jsonl",
                        self._dropped)
        self._outbox.put({"status": status, "end_time_ms": int(time.time() * 1000)})
        self._closing = True
        self._wake.set()
        self._thread.join(timeout=self.close_wait_s)
        if self._thread.is_alive():
            log.warning("MLflow at %s is still unreachable: run %s (%s) and its last records wait in %s; the "
                        "next run in this dir or `affectgpt runs close %s` delivers them", self._uri, self.run_id,
                        status, self._outbox.path, self._outbox.path.parent)

    def _deliver(self) -> None:
        down_since = None
        while True:
            self._wake.wait(timeout=_RETRY_S if down_since else None)
            self._wake.clear()
            try:
                sent = self._outbox.send(self._tracker.client, self.run_id)
            except Exception as e:  # any failure of the server or the network: keep the records, retry
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("MLflow at %s does not answer (%s): training continues; metrics wait in %s and "
                                "are sent when it is back (retrying every %.0f s)", self._uri, _short(e),
                                self._outbox.path, _RETRY_S)
                continue
            if down_since is not None:
                log.warning("MLflow at %s answers again after %.0f s: delivered %d waiting records", self._uri,
                            time.monotonic() - down_since, sent)
                down_since = None
            if self._outbox.pending():
                self._wake.set()  # more arrived while sending
            elif self._closing:
                return


def recover(directory: Path, continuing: str | None = None, status: str = "FAILED") -> str | None:
    """Deliver the outbox a run in ``directory`` left behind and, unless it is ``continuing`` (a resume reopens
    it), set a run still RUNNING to ``status``: it cannot be running, since its process is gone (the training
    job holds the dir's lock; ``affectgpt runs close`` checks it). Returns the run's status, None if none."""
    from mlflow import MlflowClient

    path = directory / RUN_FILE
    if not path.is_file():
        return None
    info = json.loads(path.read_text(encoding="utf-8"))
    client = MlflowClient(tracking_uri=info["uri"])
    outbox = Outbox(directory / OUTBOX)
    sent = outbox.send(client, info["run_id"])
    if sent:
        log.info("MLflow: delivered %d records left in %s to run %s", sent, outbox.path, info["run_id"])
    current = client.get_run(info["run_id"]).info.status
    if current == "RUNNING" and info["run_id"] != continuing:
        client.set_terminated(info["run_id"], status=status)
        log.warning("MLflow: run %s at %s was left RUNNING by a process that is gone; marked %s", info["run_id"],
                    info["uri"], status)
        current = status
    return current


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]
