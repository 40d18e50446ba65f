"""Evaluate a model on a shard split: describe every clip (batched, with a progress bar), extract the emotion
labels of each description, and score them against the ground truth with the EMER metrics.

Writes OUT/predictions.csv (name, description, labels) and OUT/metrics.json (Accuracy_s, Recall_s, their
average and F_s at emotion-wheel levels 2 and 1, bootstrap 95% intervals, empty ground truth reported apart).
With --train-labels, metrics.json also holds the constant most-frequent-labels baseline; with --untrained, the
untrained model (a recipe's encoders and LLM with freshly initialised fusion and projectors) described the
same split too, into OUT/untrained/. Every system is scored by the same code. With tracking on
(--tracking-enabled, or tracking.enabled=true in --config), every system is also one finished MLflow run (tag
kind=eval; metric names in affectgpt.run_metrics) with its metrics.json and predictions.csv as artifacts.

Settings come from --config FILE (YAML, keys as below), the flags, then key=value overrides (e.g.
eval.max_new_tokens=200, tags.cell=demo); later wins.

Example:
  affectgpt eval --model work/demo/stage2/export --shards work/demo/shards/test --out work/demo/eval \\
      --train-labels work/demo/corpus/fine.csv --untrained configs/models/smollm2-135m.yaml
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path

from affectgpt.config import ConfigError, add_config_arguments, config_from_args
from affectgpt.eval.generate import EvalConfig
from affectgpt.eval.llm_extract import ExtractorConfig, build_extractor
from affectgpt.tracking import TrackingConfig

HELP = "describe a shard split with a model and score the descriptions (EMER metrics)"
log = logging.getLogger(__name__)


@dataclass
class EvalCommandConfig:
    """Settings of ``affectgpt eval``.

    model: model directory (affectgpt export)
    shards: shard directory or URL of the split to evaluate
    out: output directory
    train_labels: CSV with the training split's labels (e.g. the corpus's fine.csv): adds the most-frequent
        labels baseline
    untrained: model recipe (YAML) or model directory to evaluate as the untrained baseline
    device: torch device (none: cuda if available, else cpu)
    run_name: the model's MLflow run name (none: tags.cell, else the model directory's name)
    """

    model: Path
    shards: str
    out: Path
    train_labels: Path | None = None
    untrained: Path | None = None
    device: str | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(enabled=False),
                                     metadata={"flag_prefix": "tracking-"})
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # the model run's tags (a study: cell, backbone, init)
    baseline_tags: dict[str, dict[str, str]] = field(default_factory=dict)  # by baseline: its run's tags


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, EvalCommandConfig)


def run(args: argparse.Namespace) -> int:
    import torch

    from affectgpt.eval.generate import evaluate_split
    from affectgpt.eval.lexicon import LexiconError
    from affectgpt.eval.scoring import format_table, table_labels
    from affectgpt.eval.tables import TableError, read_table
    from affectgpt.eval.wheels import load_wheels

    try:
        cfg = config_from_args(EvalCommandConfig, args)
        extractor = build_extractor(cfg.extractor)
        load_wheels(cfg.eval.wheels)  # a bad wheel file fails before any generation
        train = None
        if cfg.train_labels:
            rows = read_table(cfg.train_labels)
            train = list(table_labels(rows, "auto", extractor, cfg.train_labels).values())
    except (ConfigError, TableError, LexiconError) as e:
        log.error("%s", e)
        return 2
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    baselines = {}
    if cfg.untrained:
        untrained = _load(cfg.untrained, cfg.eval.seed).to(device)
        run = evaluate_split(untrained, cfg.shards, cfg.out / "untrained", cfg.eval, extractor,
                             model_name=str(cfg.untrained))
        baselines["untrained"] = run["model"]
        del untrained  # one model in memory at a time
    model = _load(cfg.model, cfg.eval.seed).to(device)
    result = evaluate_split(model, cfg.shards, cfg.out, cfg.eval, extractor, train, model_name=str(cfg.model),
                            baselines=baselines)
    print(format_table(result))
    if cfg.tracking.enabled:
        _track(cfg, result)
    return 0


def _track(cfg: EvalCommandConfig, result: dict) -> None:
    """One finished MLflow run per system: the model, then each baseline it was scored against."""
    from affectgpt.run_metrics import log_evaluation

    name = cfg.run_name or cfg.tags.get("cell") or cfg.model.name
    run_id = log_evaluation(cfg.tracking, cfg.out, result["model"], name, cfg.tags, cfg.out, cfg.shards)
    log.info("MLflow run %s: evaluation of %s", run_id, name)
    for baseline, metrics in result.get("baselines", {}).items():
        tags = {"baseline": baseline, **cfg.baseline_tags.get(baseline, {})}
        eval_dir = cfg.out / "untrained" if baseline == "untrained" else None
        run_id = log_evaluation(cfg.tracking, cfg.out, metrics, tags.get("cell", f"{name} {baseline}"), tags,
                                eval_dir, cfg.shards)
        log.info("MLflow run %s: baseline %s", run_id, baseline)


def _load(path: Path, seed: int):
    """A saved model directory, or a recipe YAML built untrained (its fresh weights drawn from ``seed``, so the
    baseline is the same in every run)."""
    import torch

    from affectgpt.config import load_config
    from affectgpt.model import AffectGPT, AffectGPTConfig

    if path.is_file():
        torch.manual_seed(seed)
        return AffectGPT.from_config(load_config(AffectGPTConfig, path))
    return AffectGPT.from_pretrained(path)
