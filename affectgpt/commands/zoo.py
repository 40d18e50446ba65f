"""Build the local model zoo: tiny random LLMs of five families, tiny vision and speech encoders, a BPE
tokenizer with a chat template and placeholder tokens, and the SmolLM2-135M-Instruct conversion (GGUF ->
safetensors). Offline, idempotent (existing entries are kept), seconds apart from SmolLM2's ~30 s dequantisation.

Example: affectgpt zoo build --out models/
         affectgpt zoo build --out models/ --only llm/llama-tiny video/clip-tiny audio/whisper-tiny
The recipes in configs/models/*.yaml name these paths; see affectgpt/model/zoo.py for real checkpoints.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

HELP = "build the offline model zoo (tiny LLMs and encoders, SmolLM2-135M conversion)"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="build the missing entries")
    build.add_argument("--out", type=Path, default=Path("models"), help="zoo directory (default: models)")
    build.add_argument("--only", nargs="+", metavar="ENTRY", help="build only these entries (e.g. llm/llama-tiny)")
    build.add_argument("--seed", type=int, default=0, help="initialisation seed (default: 0)")


def run(args: argparse.Namespace) -> int:
    from affectgpt.model.zoo import build_zoo

    start = time.perf_counter()
    status = build_zoo(args.out, only=args.only, seed=args.seed)
    counts = {kind: sum(s.split(":")[0] == kind for s in status.values()) for kind in ("built", "exists", "failed")}
    log.info("zoo %s: %d entries = %d built + %d existing + %d failed, %.1f s", args.out, len(status),
             counts["built"], counts["exists"], counts["failed"], time.perf_counter() - start)
    return 1 if counts["failed"] else 0
