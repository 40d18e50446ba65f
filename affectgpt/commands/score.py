"""Score predicted descriptions or labels against ground truth with the EMER metrics.

Both CSVs need a name column and a description column (description, else english, else chinese) and/or a
labels column (comma-separated). By default labels are taken from the labels column when a file has one, else extracted
from the descriptions (lexicon, or an LLM with --llm-url/--llm-model). Every ground-truth name needs exactly
one prediction. Prints a table (bootstrap 95% intervals in brackets) and writes the full metrics as JSON.

--task picks how the ground truth is scored (open_vocabulary: wheel-group overlap; discrete: hit rate and
accuracy at wheel level 1; sentiment: weighted F1 and accuracy of the labels' valence, neutral ground truth
left out). --wheel FILE (repeatable; a TSV of label, level1, level2; "default" is the shipped wheel) scores
on each wheel given and reports their mean.

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
    add_task_arguments(p)
    add_extractor_arguments(p)


def add_task_arguments(p: argparse.ArgumentParser) -> None:
    """--task and --wheel, shared by score and eval."""
    from affectgpt.eval.tasks import TASKS

    p.add_argument("--task", choices=TASKS, default="open_vocabulary",
                   help="how the ground truth is scored (default: open_vocabulary)")
    p.add_argument("--wheel", type=Path, action="append", default=[], metavar="FILE",
                   help="emotion wheel TSV (label, level1, level2), repeatable; 'default' is the shipped wheel; "
                        "several wheels: metrics per wheel and their mean (default: the shipped wheel)")


def run(args: argparse.Namespace) -> int:
    from affectgpt.eval.lexicon import LexiconError
    from affectgpt.eval.scoring import format_table, score_tables
    from affectgpt.eval.tables import TableError
    from affectgpt.eval.wheels import load_wheels

    try:
        result = score_tables(
            args.gt, args.pred, args.gt_source, args.pred_source, build_extractor(args),
            train_path=args.train, bootstrap=args.bootstrap, task=args.task, wheels=load_wheels(args.wheel),
        )
    except (TableError, LexiconError) as e:
        log.error("%s", e)
        return 2
    print(format_table(result))
    out = args.json or args.pred.with_suffix(".score.json")
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", out)
    return 0
