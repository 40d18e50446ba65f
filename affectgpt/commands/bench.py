"""Score models on a benchmark suite: every corpus of each suite described by the model and scored by the
task the corpus declares (open_vocabulary: wheel-group Avg; discrete: hit rate at wheel level 1; sentiment:
weighted F1 of the predicted valence, neutral ground truth excluded), as MER-UniBench does.

Prints one table (rows: corpora, columns: models, the mean of the primary scores last) and writes
OUT/bench.json, OUT/bench.md and, per model and corpus, OUT/<model>/<suite>/<corpus>/{predictions.csv,
metrics.json}. Each model is one MLflow run (tag kind=bench): bench/<corpus>/<metric> and bench/mean.

Suites are YAML files (configs/bench/*.yaml: name, root, corpora of {name, task, shards}, generation
settings); key=value overrides apply to every suite given (e.g. root=work/demo/shards).

Example:
  affectgpt bench --model work/demo/study/llama-tiny/stage1+stage2/stage2/model \\
      --suite configs/bench/synth.yaml --out work/demo/bench root=work/demo/shards
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from affectgpt.config import add_config_arguments, config_from_args
from affectgpt.eval.llm_extract import ExtractorConfig, build_extractor

HELP = "score models on a benchmark suite of corpora with declared tasks (mean of the primary scores)"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, action="append", required=True,
                   help="model directory (affectgpt export); repeatable: one column and one MLflow run each")
    p.add_argument("--suite", type=Path, nargs="+", required=True, help="suite YAML file(s), e.g. configs/bench/*.yaml")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--wheel", type=Path, action="append", default=[], metavar="FILE",
                   help="emotion wheel TSV (label, level1, level2), repeatable; replaces the suites' wheels")
    p.add_argument("--experiment", default="bench", help="MLflow experiment (default: bench)")
    p.add_argument("--tracking-uri", help="MLflow URI (default: $MLFLOW_TRACKING_URI, else sqlite in OUT)")
    p.add_argument("--no-tracking", action="store_true", help="do not log MLflow runs")
    p.add_argument("--seed", type=int, default=0, help="seed of the reading order and bootstrap (default: 0)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    add_config_arguments(p, ExtractorConfig, overrides=False, config=False)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="suite overrides, applied to every suite")


def run(args: argparse.Namespace) -> int:
    import torch

    from affectgpt.config import ConfigError, load_config
    from affectgpt.eval.bench import SuiteConfig, run_bench, write_report
    from affectgpt.eval.lexicon import LexiconError
    from affectgpt.eval.wheels import load_wheels
    from affectgpt.model import AffectGPT

    try:
        suites = [load_config(SuiteConfig, path, args.overrides) for path in args.suite]
        extractor = build_extractor(config_from_args(ExtractorConfig, args, overrides=False))
        load_wheels(args.wheel or [w for s in suites for w in s.wheels])  # bad wheel files fail before generating
    except (ConfigError, LexiconError) as e:
        log.error("%s", e)
        return 2
    missing = [str(s.shards(c)) for s in suites for c in s.corpora if not s.shards(c).exists()]
    missing += [str(m) for m in args.model if not m.is_dir()]
    if missing:
        log.error("not found: %s", ", ".join(missing))
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    scores = []
    for model_dir in args.model:
        name = _model_name(model_dir, args.model)
        model = AffectGPT.from_pretrained(model_dir).to(device)
        mine = run_bench(model, name, suites, args.out / name, extractor, args.wheel, seed=args.seed)
        del model  # one model in memory at a time
        scores += mine
        if not args.no_tracking:
            _track(args, model_dir, name, [s.name for s in suites], mine)
    print(write_report(scores, args.out))
    log.info("wrote %s and %s", args.out / "bench.md", args.out / "bench.json")
    return 0


def _model_name(model_dir: Path, models: list[Path]) -> str:
    """The directory's name; with several models, the first part of its path that tells it from the others
    (work/study/llama-tiny/stage2-only/stage2/model -> stage2-only)."""
    if len(models) == 1:
        return model_dir.name
    common = Path(os.path.commonpath([m.resolve() for m in models]))
    rel = model_dir.resolve().relative_to(common)
    return rel.parts[0] if rel.parts else model_dir.name


def _track(args: argparse.Namespace, model_dir: Path, name: str, suites: list[str], scores: list) -> None:
    from affectgpt.eval.bench import tracker_metrics
    from affectgpt.tracking import Tracker, TrackingConfig
    from affectgpt.train.checkpoint import PROVENANCE

    provenance = model_dir / PROVENANCE
    tags = {"kind": "bench", "model": str(model_dir), "suites": ",".join(suites)}
    if provenance.is_file():
            tags["selection"] = json.loads(provenance.read_text(encoding="utf-8")).get("selection", "last")
    tracker = Tracker.open(TrackingConfig(uri=args.tracking_uri, experiment=args.experiment), args.out,
                           run_name=f"bench {name}", params={"model": str(model_dir), "suites": ",".join(suites)},
                           tags=tags)
    tracker.log_metrics(tracker_metrics(scores), step=0)
    tracker.close()
    log.info("MLflow run %s: bench %s", tracker.run_id, name)
