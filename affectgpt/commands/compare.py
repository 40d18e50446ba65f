"""Print the comparison table of a study from the MLflow store: one row per (backbone, initialisation) cell and
per baseline, with Accuracy_s, Recall_s, their average and the emotion-wheel F1 (95% bootstrap intervals),
training wall time and training throughput.

Writes compare.md, compare.json and compare.png (metric bars + training-loss curves) to --out.
The store is --tracking-uri, else $MLFLOW_TRACKING_URI, else sqlite:///<--store-dir>/mlflow.db.
Example: affectgpt compare --experiment demo --store-dir work/demo
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "print and plot the backbone x initialisation table of an experiment from MLflow"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, help="MLflow experiment name (a study's name)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or the SQLite store)")
    p.add_argument("--store-dir", type=Path, default=Path("."), help="directory of mlflow.db (default: .)")
    p.add_argument("--out", type=Path, help="write compare.md/.json/.png here (default: <store-dir>/compare)")
    p.add_argument("--markdown", action="store_true", help="print Markdown instead of aligned text")


def run(args: argparse.Namespace) -> int:
    from affectgpt.compare import collect, to_markdown, to_text, write_report
    from affectgpt.tracking import TrackingConfig

    uri = TrackingConfig(uri=args.tracking_uri).resolve_uri(args.store_dir)
    try:
        rows = collect(uri, args.experiment)
    except LookupError as e:
        log.error("%s", e)
        return 1
    if not rows:
        log.error("experiment %r has no finished evaluation runs yet", args.experiment)
        return 1
    print(to_markdown(rows) if args.markdown else to_text(rows))
    out = args.out or args.store_dir / "compare"
    write_report(rows, uri, out)
    log.info("wrote %s/compare.md, compare.json, compare.png", out)
    return 0
