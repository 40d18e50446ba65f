"""Score predicted descriptions or labels against ground truth with the EMER metrics.

Both CSVs need a name column and a description column (description, or english) and/or a labels column
(comma-separated). By default labels are taken from the labels column when a file has one, else extracted
from the descriptions (lexicon, or an LLM with --llm-url/--llm-model). Every ground-truth name needs exactly
one prediction. Prints a table (bootstrap 95% intervals in brackets) and writes the full metrics as JSON.

Example:
  affectgpt score --gt data/synth/test.csv --pred work/eval/predictions.csv --train data/synth/fine.csv \\
      --json work/eval/score.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from affectgpt.commands.labels import add_extractor_arguments, build_extractor

HELP = "score predictions against ground truth (Accuracy_s, Recall_s, emotion-wheel F, bootstrap CIs)"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gt", type=Path, required=True, help="ground-truth CSV")
    p.add_argument("--pred", type=Path, required=True, help="predictions CSV")
    p.add_argument("--train", type=Path, help="training CSV: adds the most-frequent-labels baseline")
    p.add_argument("--gt-source", choices=["auto", "labels", "description"], default="auto",
                   help="where ground-truth labels come from (default: auto)")
    p.add_argument("--pred-source", choices=["auto", "labels", "description"], default="auto",
                   help="where predicted labels come from (default: auto)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples, 0 for none (default: 1000)")
    p.add_argument("--json", type=Path, help="write the metrics here (default: PRED with suffix .score.json)")
    add_extractor_arguments(p)


def run(args: argparse.Namespace) -> int:
    from affectgpt.eval.scoring import format_table, score_tables
    from affectgpt.eval.tables import TableError

    try:
        result = score_tables(
            args.gt, args.pred, args.gt_source, args.pred_source, build_extractor(args),
            train_path=args.train, bootstrap=args.bootstrap,
        )
    except TableError as e:
        log.error("%s", e)
        return 2
    print(format_table(result))
    out = args.json or args.pred.with_suffix(".score.json")
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", out)
    return 0
