"""Consolidate a training checkpoint (ZeRO-3/ZeRO-2 shards or a DDP checkpoint) into a model directory.

  affectgpt export CKPT_DIR --out MODEL_DIR [--best]

CKPT_DIR is a run's checkpoint dir (its `latest` complete checkpoint is used; with --best the one its `best`
pointer names, i.e. the best validation step of a run trained with eval.shards) or one checkpoint in it
(CKPT_DIR/step_00000200). MODEL_DIR/provenance.json records the step and the selection rule (`last` or
`best-val:<metric>`). MODEL_DIR is the self-describing directory `AffectGPT.from_pretrained` loads: the
LLM with its tokenizer (tied embeddings stay tied), the encoders, the adapter and the recipe. It is written
under a temporary name and renamed when complete. Runs on CPU in one process, no launcher needed.
Example: affectgpt export work/checkpoints/stage1 --out work/models/stage1
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

HELP = "consolidate a training checkpoint into a model directory"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, metavar="CKPT_DIR", help="checkpoint dir (run dir or one step_* dir)")
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.add_argument("--force", action="store_true", help="replace MODEL_DIR if it exists")
    p.add_argument("--best", action="store_true",
                   help="export the best-validated checkpoint (CKPT_DIR/best) instead of the latest")


def run(args: argparse.Namespace) -> int:
    from affectgpt.train.checkpoint import CheckpointError
    from affectgpt.train.export import export

    if args.out.exists() and not args.force:
        log.error("%s exists; pass --force to replace it", args.out)
        return 1
    try:
        tmp = args.out.with_name(args.out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        info = export(args.checkpoint, tmp, best=args.best)
        shutil.rmtree(args.out, ignore_errors=True)
        tmp.rename(args.out)
    except (CheckpointError, ValueError) as e:
        log.error("%s", e)
        return 1
    log.info("exported %s (step %d) to %s", info.path, info.step, args.out)
    return 0
