"""SIGTERM (what schedulers send before they kill a job) becomes a request to checkpoint and stop.

The handler only sets a flag; the loop reads it at the next optimizer-step boundary and all ranks agree on it
with one all-reduce, so a signal that reached only some ranks still stops every rank at the same step.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

log = logging.getLogger(__name__)


class PreemptionFlag:
    """Context manager: while active, SIGTERM sets ``requested`` instead of killing the process."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM,)):
        self.signals = signals
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.requested:
            log.warning("received %s: will checkpoint at the end of this step and exit", signal.Signals(signum).name)
        self.requested = True

    def __enter__(self) -> PreemptionFlag:
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
