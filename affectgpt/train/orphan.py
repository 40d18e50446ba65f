"""Ranks exit when their launcher dies, instead of training on as orphans.

``deepspeed`` starts each rank through a per-node launcher: ``deepspeed`` (the runner) -> ``python -m
deepspeed.launcher.launch`` -> ranks; ``torchrun`` is the direct parent of its ranks. Killing the runner with
SIGKILL leaves the per-node launcher and the ranks running, and a rerun would then train into the same checkpoint
dir at the same time. So each rank watches its parent and, when that parent is DeepSpeed's per-node launcher,
the process that started it too; when one is gone the rank exits at once with ``ORPHANED_EXIT`` (its progress
since the last checkpoint is lost, exactly as if the whole job had been killed; rerunning resumes).

A thread polling the processes is used rather than ``prctl(PR_SET_PDEATHSIG)``: that signal covers only the
direct parent (the per-node launcher, which survives the runner) and fires when the parent *thread* that
forked exits, not the parent process.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import psutil

log = logging.getLogger(__name__)

ORPHANED_EXIT = 1
_DEEPSPEED_NODE_LAUNCHER = "deepspeed.launcher.launch"


def launchers() -> list[psutil.Process]:
    """The processes this rank's life depends on: its parent, plus the runner above DeepSpeed's node launcher."""
    parent = psutil.Process().parent()
    if parent is None or parent.pid == 1:
        return []
    chain = [parent]
    try:
        if _DEEPSPEED_NODE_LAUNCHER in parent.cmdline():
            grandparent = parent.parent()
            if grandparent is not None and grandparent.pid != 1:
                chain.append(grandparent)
    except psutil.Error:
        pass
    return chain


def exit_when_orphaned(interval_s: float = 1.0) -> None:
    """Start a daemon thread that ends this process when one of ``launchers()`` has exited."""
    watched = launchers()
    if not watched:
        return
    threading.Thread(target=_watch, args=(watched, interval_s), name="orphan-watchdog", daemon=True).start()


def _watch(watched: list[psutil.Process], interval_s: float) -> None:
    names = {proc.pid: " ".join(proc.cmdline()[:4]) for proc in watched}
    while True:
        time.sleep(interval_s)
        for proc in watched:
            if not _alive(proc):
                log.error("launcher PID %d (%s) is gone: this rank is an orphan and exits now (rerun the "
                          "command to resume from the last checkpoint)", proc.pid, names[proc.pid])
                for handler in logging.getLogger().handlers:
                    handler.flush()
                os._exit(ORPHANED_EXIT)


def _alive(proc: psutil.Process) -> bool:
    try:
        # is_running() also checks the start time, so a reused PID does not count as the launcher.
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
