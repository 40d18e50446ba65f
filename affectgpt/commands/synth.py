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

from affectgpt.config import ConfigError, add_config_arguments, config_from_args
from affectgpt.synth.corpus_writer import SynthConfig, write_corpus

HELP = "generate a synthetic EMER corpus (videos + coarse/fine/test CSVs)"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, SynthConfig)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(SynthConfig, args)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    start = time.perf_counter()
    counts = write_corpus(cfg)
    elapsed = time.perf_counter() - start
    log.info(
        "wrote %d clips to %s in %.1f s (%.1f clips/s): %s",
        cfg.num, cfg.out, elapsed, cfg.num / elapsed, ", ".join(f"{s}.csv={n}" for s, n in counts.items()),
    )
    return 0
