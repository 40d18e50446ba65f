"""Ranks stop when their launcher dies, instead of training on as orphans.

``deepspeed`` starts each rank through a per-node launcher: ``deepspeed`` (the runner) -> ``python -m
deepspeed.launcher.launch`` -> ranks; ``torchrun`` is the direct parent of its ranks. Killing the runner with
SIGKILL leaves the per-node launcher and the ranks running, and a rerun would then train into the same checkpoint
dir at the same time. So each rank watches its parent and, when that parent is DeepSpeed's per-node launcher,
the process that started it too. When one is gone the rank stops as on preemption: it sends itself SIGTERM, so
every rank checkpoints at the end of the step and exits (``affectgpt.train.preemption``); a rank still alive
``grace_s`` later (blocked, e.g. waiting for a rank that died) exits at once with ``ORPHANED_EXIT``.
A SIGTERM to the whole job, which ends the runner first, thus stays one orderly preemption.

A thread polling the processes is used rather than ``prctl(PR_SET_PDEATHSIG)``: that signal covers only the
direct parent (the per-node launcher, which survives the runner) and fires when the parent *thread* that
forked exits, not the parent process.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import psutil

log = logging.getLogger(__name__)

ORPHANED_EXIT = 1
_DEEPSPEED_NODE_LAUNCHER = "deepspeed.launcher.launch"


def launchers() -> list[psutil.Process]:
    """The processes this rank's life depends on: its parent, plus the runner above DeepSpeed's node launcher.
    None when no launcher started it (both set LOCAL_RANK): a parent shell may well exit first (``nohup``)."""
    if "LOCAL_RANK" not in os.environ:
        return []
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


def stop_when_orphaned(interval_s: float = 1.0, grace_s: float = 120.0) -> None:
    """Start a daemon thread that stops this process when one of ``launchers()`` has exited."""
    watched = launchers()
    if watched:
        threading.Thread(target=_watch, args=(watched, interval_s, grace_s), name="orphan-watchdog",
                         daemon=True).start()


def _watch(watched: list[psutil.Process], interval_s: float, grace_s: float) -> None:
    names = {proc.pid: " ".join(proc.cmdline()[:4]) for proc in watched}
    while all(_alive(proc) for proc in watched):
        time.sleep(interval_s)
    gone = next(proc for proc in watched if not _alive(proc))
    log.error("launcher PID %d (%s) is gone: this rank is an orphan; stopping as on SIGTERM (checkpoint, exit; "
              "rerun the command to resume)", gone.pid, names[gone.pid])
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    log.error("still running %.0f s after its launcher died: exiting now", grace_s)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(ORPHANED_EXIT)


def _alive(proc: psutil.Process) -> bool:
    try:
        # is_running() also checks the start time, so a reused PID does not count as the launcher.
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
