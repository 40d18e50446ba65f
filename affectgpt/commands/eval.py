"""Evaluate a model on a shard split: describe every clip (batched, with a progress bar), extract the emotion
labels of each description, and score them against the ground truth with the EMER metrics.

Writes OUT/predictions.csv (name, description, labels) and OUT/metrics.json (Accuracy_s, Recall_s, their
average and F_s at emotion-wheel levels 2 and 1, bootstrap 95% intervals, empty ground truth reported apart).
With --train-labels, metrics.json also holds the constant most-frequent-labels baseline; with --untrained, the
untrained model (a recipe's encoders and LLM with freshly initialised fusion and projectors) described the
same split too, into OUT/untrained/. Every system is scored by the same code.

Example:
  affectgpt eval --model work/demo/stage2/export --shards work/demo/shards/test --out work/demo/eval \\
      --train-labels work/demo/corpus/fine.csv --untrained configs/models/smollm2-135m.yaml
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from affectgpt.commands.labels import add_extractor_arguments, build_extractor
from affectgpt.commands.score import add_task_arguments

HELP = "describe a shard split with a model and score the descriptions (EMER metrics)"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="model directory (AffectGPT.save_pretrained)")
    p.add_argument("--shards", required=True, help="shard directory or URL of the split to evaluate")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--train-labels", type=Path,
                   help="CSV with the training split's labels (e.g. the corpus's fine.csv): adds the baseline")
    p.add_argument("--untrained", type=Path,
                   help="model recipe (YAML) or model directory to evaluate as the untrained baseline")
    p.add_argument("--batch-size", type=int, default=8, help="clips per generate call (default: 8)")
    p.add_argument("--max-new-tokens", type=int, default=160, help="description length limit (default: 160)")
    p.add_argument("--repetition-penalty", type=float, default=1.0,
                   help="> 1 discourages repeated words in the descriptions (default: 1.0, plain greedy)")
    p.add_argument("--limit", type=int, help="only the first N samples (smoke runs)")
    p.add_argument("--gt-source", choices=["auto", "labels", "description"], default="auto",
                   help="ground truth from sample labels or extracted from reference descriptions (default: auto)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples, 0 for none (default: 1000)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the reading order, the bootstrap and the untrained baseline's weights (default: 0)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    add_task_arguments(p)
    add_extractor_arguments(p)


def run(args: argparse.Namespace) -> int:
    import torch

    from affectgpt.eval.generate import EvalConfig, evaluate_split
    from affectgpt.eval.lexicon import LexiconError
    from affectgpt.eval.scoring import format_table, table_labels
    from affectgpt.eval.tables import TableError, read_table
    from affectgpt.eval.wheels import load_wheels

    cfg = EvalConfig(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, limit=args.limit,
                     repetition_penalty=args.repetition_penalty,
                     gt_source=args.gt_source, bootstrap=args.bootstrap, seed=args.seed,
                     task=args.task, wheels=args.wheel)
    extractor = build_extractor(args)
    train = None
    try:
        load_wheels(args.wheel)  # a bad wheel file fails before any generation
        if args.train_labels:
            rows = read_table(args.train_labels)
            train = list(table_labels(rows, "auto", extractor, args.train_labels).values())
    except (TableError, LexiconError) as e:
        log.error("%s", e)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    baselines = {}
    if args.untrained:
        untrained = _load(args.untrained, args.seed).to(device)
        run = evaluate_split(untrained, args.shards, args.out / "untrained", cfg, extractor,
                             model_name=str(args.untrained))
        baselines["untrained"] = run["model"]
        del untrained  # one model in memory at a time
    model = _load(args.model, args.seed).to(device)
    result = evaluate_split(model, args.shards, args.out, cfg, extractor, train, model_name=str(args.model),
                            baselines=baselines)
    print(format_table(result))
    return 0


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
