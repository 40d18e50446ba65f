"""Check a corpus directory: every split CSV parses, every row names an existing video, every video decodes.

Prints one line per split (`in = ok + bad`) and each bad row with its reason; exits 1 if anything is bad.
Example: affectgpt corpus check data/synth
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "validate a corpus (CSVs, videos present and decodable)"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["check"], help="what to do with the corpus")
    p.add_argument("corpus", type=Path, help="corpus directory (videos/ + <split>.csv)")
    p.add_argument("--split", action="append", help="split(s) to check (default: every *.csv in the corpus)")
    p.add_argument("--no-decode", action="store_true", help="only check that videos exist, do not decode them")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from affectgpt.corpus import CorpusError, scan_csv, split_csv
    from affectgpt.media import MediaError, decode_clip

    splits = args.split or sorted(p.stem for p in args.corpus.glob("*.csv"))
    if not splits:
        log.error("%s holds no <split>.csv file", args.corpus)
        return 1
    bad_total = 0
    for split in splits:
        try:
            records, problems = scan_csv(split_csv(args.corpus, split), args.corpus)
        except CorpusError as e:
            log.error("%s", e)
            bad_total += 1
            continue
        bad = [(p.name, f"row {p.row}: {p.reason}") for p in problems]
        if not args.no_decode:
            for record in tqdm(records, desc=f"decode {split}", unit="clip", leave=False):
                try:
                    decode_clip(record.video, num_frames=2, size=64)
                except MediaError as e:
                    bad.append((record.name, e.reason))
        for name, reason in bad:
            log.error("%s/%s: %s", split, name, reason)
        total = len(records) + len(problems)
        log.info("%s: %d rows = %d ok + %d bad", split, total, total - len(bad), len(bad))
        bad_total += len(bad)
    return 1 if bad_total else 0
