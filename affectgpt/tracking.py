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

import logging
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# MLflow limits: 500 characters per param value, 100 params and 1000 metrics per batch call.
_PARAM_VALUE_LIMIT = 500
_PARAM_BATCH = 100
_METRIC_BATCH = 1000


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<default_dir>/mlflow.db
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
        self._client = client
        self.run_id = run_id
        self._logged_through = logged_through or {}  # metric -> highest step already recorded
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
    ) -> Tracker:
        """Start a run, or reopen ``run_id`` (a resumed training run) and mark it running again."""
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
        return tracker

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), _PARAM_BATCH):
            self._client.log_batch(self.run_id, params=items[i : i + _PARAM_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer metrics of one step; flushed every ``_METRIC_BATCH`` values and on ``flush``/``close``."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), now, step) for k, v in metrics.items()
                            if step > self._logged_through.get(k, -1))
        if len(self._buffer) >= _METRIC_BATCH:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self._buffer), _METRIC_BATCH):
            self._client.log_batch(self.run_id, metrics=self._buffer[i : i + _METRIC_BATCH])
        self._buffer.clear()

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    def close(self, status: str = "FINISHED") -> None:
        self.flush()
        self._client.set_terminated(self.run_id, status=status)


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


class MlflowMetrics:
    """The training loop's metrics hook (``affectgpt.train.metrics.MetricsLogger``) backed by an MLflow run.

    ``run_id`` is what the checkpoint stores; passing it back on resume reopens the same run.
    """

    def __init__(self, tracker: Tracker):
        self._tracker = tracker
        self.run_id = tracker.run_id

    def log(self, step: int, values: dict[str, float]) -> None:
        self._tracker.log_metrics(values, step)
        self._tracker.flush()  # a killed run keeps what it logged before the kill

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._tracker.log_artifact(path, artifact_path)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._tracker.set_tags(tags)

    def close(self, status: str = "FINISHED") -> None:
        self._tracker.close(status)
