"""The ``affectgpt`` command: parses arguments and dispatches to ``affectgpt.commands.<name>``.

Each command module has a docstring (its ``--help`` description), ``HELP`` (one line for the command list),
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import heavy libraries (torch, ray) inside
``run`` so that ``affectgpt --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Order is the order of the pipeline, which is the order users meet the commands in.
COMMANDS = [
    "synth",
    "corpus",
    "ray",
    "shards",
    "zoo",
    "plan",
    "export",
    "labels",
    "score",
    "serve-llm",
    "eval",
    "describe",
    "bench",
    "study",
    "compare",
    "runs",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="affectgpt",
        description="Train and evaluate AffectGPT-style models for Explainable Multimodal Emotion Recognition.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"affectgpt.commands.{name.replace('-', '_')}")
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
