"""Write a synthetic EMER corpus in the on-disk layout of a real release.

  OUT/videos/<name>.mp4   H.264 + AAC clips: a drawn face and a voice-like signal whose cues encode the emotion
  OUT/coarse.csv          EMER-Coarse style (short automatic descriptions, --label-noise wrong labels)
  OUT/fine.csv            EMER-Fine style (multi-clue reasoning, clean labels)
  OUT/val.csv             fine-style clips held out of fine.csv (--val-fraction), to select checkpoints on
  OUT/test.csv            held-out clips with fine-style descriptions, for evaluation
  OUT/test_discrete.csv   with --task-variants: the test clips with one discrete label (their base emotion)
  OUT/test_sentiment.csv  ... and with its valence (positive/negative/neutral), for `affectgpt bench`

Deterministic for a seed; re-running into the same OUT keeps finished videos.
Example: affectgpt synth --out data/synth --num 2000 --workers 2
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

HELP = "generate a synthetic EMER corpus (videos + coarse/fine/test CSVs)"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="output corpus directory")
    p.add_argument("--num", type=int, default=200, help="number of clips (default: 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--label-noise", type=float, default=0.25, help="wrong-label rate of coarse.csv (default: 0.25)")
    p.add_argument("--fine-fraction", type=float, default=0.15, help="share of clips in fine.csv (default: 0.15)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the fine clips held out as val.csv (default: 0.2)")
    p.add_argument("--task-variants", action="store_true",
                   help="also write test_discrete.csv and test_sentiment.csv (benchmark tasks)")
    p.add_argument("--test-fraction", type=float, default=0.15, help="share of clips in test.csv (default: 0.15)")
    p.add_argument("--seconds", type=float, default=3.0, help="clip length in seconds (default: 3)")
    p.add_argument("--fps", type=int, default=8, help="video frame rate (default: 8)")
    p.add_argument("--size", type=int, default=224, help="frame width and height in pixels (default: 224)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default: 1)")


def run(args: argparse.Namespace) -> int:
    from affectgpt.synth.corpus_writer import SynthConfig, write_corpus

    cfg = SynthConfig(
        out=args.out, num=args.num, seed=args.seed, label_noise=args.label_noise,
        fine_fraction=args.fine_fraction, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
        task_variants=args.task_variants,
        seconds=args.seconds, fps=args.fps, size=args.size, workers=args.workers,
    )
    start = time.perf_counter()
    counts = write_corpus(cfg)
    elapsed = time.perf_counter() - start
    log.info(
        "wrote %d clips to %s in %.1f s (%.1f clips/s): %s",
        cfg.num, cfg.out, elapsed, cfg.num / elapsed, ", ".join(f"{s}.csv={n}" for s, n in counts.items()),
    )
    return 0
