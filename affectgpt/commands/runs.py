"""Training runs seen from their checkpoint dir.

  affectgpt runs close CKPT_DIR [--status FAILED|KILLED|FINISHED]

`close` finishes what a training run in CKPT_DIR left undone on its tracking server (named in
CKPT_DIR/tracking.json): it delivers the metrics, artifacts and final status waiting in
CKPT_DIR/tracking-outbox.jsonl (left there when the server was unreachable when the run ended), then marks the
run --status (default FAILED) if it still shows RUNNING because its process died (kill -9, out of memory, a lost
node). It refuses while a training job holds the dir. The next training run in the same dir does the same by
itself before it starts (a resumed run continues its MLflow run rather than closing it).
Example: affectgpt runs close work/checkpoints/stage1
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "close a training run left RUNNING in MLflow by a crash, delivering what it left behind"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    close = sub.add_parser("close", help="deliver a run's waiting records and set its final status",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    close.add_argument("checkpoint", type=Path, metavar="CKPT_DIR", help="the run's checkpoint.dir")
    close.add_argument("--status", choices=["FAILED", "KILLED", "FINISHED"], default="FAILED",
                       help="status for a run still RUNNING whose own end status was never recorded (default FAILED)")


def run(args: argparse.Namespace) -> int:
    from affectgpt.tracking import RUN_FILE, recover
    from affectgpt.train.lock import describe, holder

    busy = holder(args.checkpoint)
    if busy is not None:
        log.error("%s is in use by a running training job (%s): it closes its own run", args.checkpoint,
                  describe(busy))
        return 1
    status = recover(args.checkpoint, status=args.status)
    if status is None:
        log.error("%s has no %s: no tracked training run ran there", args.checkpoint, RUN_FILE)
        return 1
    print(status)
    return 0
