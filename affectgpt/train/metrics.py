"""The metrics hook of the training loop: rank 0 owns one ``MetricsLogger`` and calls ``log(step, values)``.

``run_id`` is stored in every checkpoint and handed back to the factory on resume, so a tracker (MLflow in
``affectgpt.tracking``) continues the same run after a restart instead of opening a new one.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from affectgpt.config import save_config
from affectgpt.run_metrics import TRAIN_LOSS, TRAIN_WALL_S

log = logging.getLogger(__name__)


class MetricsLogger(Protocol):
    run_id: str

    def log(self, step: int, values: dict[str, float]) -> None: ...

    def close(self, status: str = "FINISHED") -> None: ...


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

    def close(self, status: str = "FINISHED") -> None:
        self._file.close()


class RunMetrics:
    """Rank 0's metrics for one training run: ``metrics.jsonl`` in the checkpoint dir always, plus the logger
    ``factory`` returns (MLflow when tracking is enabled). At the end it logs ``train/wall_s`` and stores the
    resolved configs and a loss curve beside the checkpoints (and as tracker artifacts when supported)."""

    def __init__(self, cfg: Any, ds_config: dict[str, Any], run_id: str | None, facts: dict[str, Any],
                 factory: Callable[[str | None, dict[str, Any]], MetricsLogger | None]):
        self.dir = cfg.checkpoint.dir
        self._cfg, self._ds_config = cfg, ds_config
        self._extra = factory(run_id, facts)
        self._jsonl = JsonlMetrics(self.dir / "metrics.jsonl", self._extra.run_id if self._extra else run_id)
        self.run_id = self._jsonl.run_id
        log.info("run %s: %s", self.run_id, " ".join(f"{k}={v}" for k, v in facts.items()))

    def log(self, step: int, values: dict[str, float]) -> None:
        self._jsonl.log(step, values)
        if self._extra is not None:
            self._extra.log(step, values)

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Run tags (the best validation step); only trackers that have tags keep them."""
        if self._extra is not None and hasattr(self._extra, "set_tags"):
            self._extra.set_tags(tags)

    def finish(self, step: int, wall_s: float) -> None:
        self.log(step, {TRAIN_WALL_S: wall_s})
        files = [self.dir / "train_config.yaml", self.dir / "deepspeed.json", self.dir / "loss.png"]
        save_config(self._cfg, files[0])
        files[1].write_text(json.dumps(self._ds_config, indent=1), encoding="utf-8")
        plot_loss(self.dir / "metrics.jsonl", files[2])
        if self._extra is not None and hasattr(self._extra, "log_artifact"):
            for path in files:
                self._extra.log_artifact(path)

    def close(self, status: str = "FINISHED") -> None:
        self._jsonl.close()
        if self._extra is not None:
            self._extra.close(status)


def plot_loss(metrics_jsonl: Path, out: Path) -> None:
    """Loss curve from ``metrics.jsonl``; lines replayed after a resume overwrite the earlier ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_step: dict[int, float] = {}
    for line in metrics_jsonl.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if TRAIN_LOSS in record:
            by_step[record["step"]] = record[TRAIN_LOSS]
    steps = sorted(by_step)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [by_step[s] for s in steps])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("train loss")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
