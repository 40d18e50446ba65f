"""The metrics hook of the training loop: rank 0 owns one ``MetricsLogger`` and calls ``log(step, values)``.

``run_id`` is stored in every checkpoint and handed back to the factory on resume, so a tracker (MLflow in
``affectgpt.tracking``) continues the same run after a restart instead of opening a new one.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class MetricsLogger(Protocol):
    run_id: str

    def log(self, step: int, values: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class JsonlMetrics:
    """Appends one JSON line per ``log`` call to ``path`` and echoes it to the log."""

    def __init__(self, path: Path, run_id: str | None = None):
        self.path = path
        self.run_id = run_id or uuid.uuid4().hex
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def log(self, step: int, values: dict[str, float]) -> None:
        self._file.write(json.dumps({"step": step, **values}) + "\n")
        self._file.flush()
        log.info("step %d %s", step, " ".join(f"{k}={v:.4g}" for k, v in values.items()))

    def close(self) -> None:
        self._file.close()
