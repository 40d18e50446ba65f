"""Run a study: every LLM backbone x initialisation cell of a YAML grid, trained in two stages through the
deepspeed launcher and evaluated on the test shards, each step an MLflow run in one experiment (the study's
name). Baselines (most frequent labels, untrained model) are scored on the same split.

Resumable: rerun the same command after an interruption; finished cells are skipped and an interrupted
training stage resumes from its latest checkpoint. Then: affectgpt compare --experiment <name>.
Example: affectgpt study --config configs/studies/backbones.yaml out=work/study
"""

from __future__ import annotations

import argparse
import logging

from affectgpt.config import ConfigError, add_config_arguments, config_from_args
from affectgpt.study import StudyConfig

HELP = "run a backbone x initialisation grid (train, export, evaluate; tracked in MLflow)"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, StudyConfig)  # --config: a study YAML, configs/studies/*.yaml


def run(args: argparse.Namespace) -> int:
    from affectgpt.study import Study

    try:
        cfg = config_from_args(StudyConfig, args)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    results = Study(cfg).run()
    width = max(map(len, results), default=0)
    for cell, outcome in results.items():
        log.info("%s  %s", cell.ljust(width), outcome)
    failed = [c for c, outcome in results.items() if outcome.startswith("failed")]
    log.info("study %s: %d cells = %d done + %d skipped + %d failed", cfg.name, len(results),
             sum(o == "done" for o in results.values()), sum(o == "skipped" for o in results.values()), len(failed))
    return 1 if failed else 0
