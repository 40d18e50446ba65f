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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from affectgpt.config import ConfigError, add_config_arguments, config_from_args
from affectgpt.eval.llm_extract import ExtractorConfig, build_extractor

HELP = "score predictions against ground truth (Accuracy_s, Recall_s, emotion-wheel F, bootstrap CIs)"
log = logging.getLogger(__name__)

Source = Literal["auto", "labels", "description"]


@dataclass
class ScoreConfig:
    """Settings of ``affectgpt score``.

    gt: ground-truth CSV
    pred: predictions CSV
    train: training CSV: adds the most-frequent-labels baseline
    gt_source: where ground-truth labels come from (auto: the labels column when the file has one)
    pred_source: where predicted labels come from
    bootstrap: bootstrap resamples, 0 for none
    json: write the metrics here (none: PRED with suffix .score.json)
    task: how the ground truth is scored (open_vocabulary, discrete or sentiment)
    wheels: emotion wheel TSV (label, level1, level2); 'default' is the shipped wheel; several wheels: metrics
        per wheel and their mean (none: the shipped wheel)
    """

    gt: Path
    pred: Path
    train: Path | None = None
    gt_source: Source = "auto"
    pred_source: Source = "auto"
    bootstrap: int = 1000
    json: Path | None = None
    task: str = "open_vocabulary"
    wheels: list[Path] = field(default_factory=list, metadata={"flag": "wheel"})
    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, ScoreConfig)


def run(args: argparse.Namespace) -> int:
    from affectgpt.eval.lexicon import LexiconError
    from affectgpt.eval.scoring import format_table, score_tables
    from affectgpt.eval.tables import TableError
    from affectgpt.eval.wheels import load_wheels

    try:
        cfg = config_from_args(ScoreConfig, args)
        result = score_tables(
            cfg.gt, cfg.pred, cfg.gt_source, cfg.pred_source, build_extractor(cfg.extractor),
            train_path=cfg.train, bootstrap=cfg.bootstrap, task=cfg.task, wheels=load_wheels(cfg.wheels),
        )
    except (ConfigError, TableError, LexiconError) as e:
        log.error("%s", e)
        return 2
    print(format_table(result))
    out = cfg.json or cfg.pred.with_suffix(".score.json")
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", out)
    return 0
