"""Extract the emotion labels that descriptions (English or Chinese) attribute to the person.

Prints one JSON object per input, {"labels": [...], "groups": [...]} (groups: level-1 emotion-wheel groups).
The default extractor is the project's lexicon (offline, deterministic); --llm-url or --llm-model use an LLM
instead (the EMER papers' protocol), with replies cached on disk. The language of each description is
detected (--lang auto), so a file may mix English and Chinese rows; Chinese labels land on the same wheel.

Examples:
  affectgpt labels --text "She smiles, but her voice is not happy; she seems anxious."
  affectgpt labels --text "她笑了，但声音并不开心，似乎有些焦虑。"
  affectgpt labels --csv final-EMER-reason.csv --out labels.csv      # reads its 'english' column
  affectgpt labels --csv final-EMER-reason.csv --column chinese --out labels-zh.csv
  affectgpt labels --text "..." --explain        # every lexicon match with its attribution status
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

from affectgpt.config import ConfigError, add_config_arguments, config_from_args
from affectgpt.eval.llm_extract import ExtractorConfig, build_extractor

HELP = "extract emotion labels from descriptions (lexicon or LLM)"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", help="a description (repeatable)")
    src.add_argument("--csv", type=Path, help="a CSV file with a name column and a description column")
    p.add_argument("--column", help="description column of --csv (default: description, else english, else chinese)")
    p.add_argument("--out", type=Path, help="write name,description,labels,groups to this CSV (with --csv)")
    p.add_argument("--explain", action="store_true", help="also print every lexicon match and its status")
    add_config_arguments(p, ExtractorConfig)


def run(args: argparse.Namespace) -> int:
    from affectgpt.eval.extract import LexiconExtractor
    from affectgpt.eval.tables import TableError, read_table

    try:
        extractor = build_extractor(config_from_args(ExtractorConfig, args))
    except ConfigError as e:
        log.error("%s", e)
        return 2
    if args.text:
        names, texts = [str(i) for i in range(len(args.text))], list(args.text)
    else:
        try:
            table = read_table(args.csv, text_column=args.column)
        except TableError as e:
            log.error("%s", e)
            return 2
        names, texts = [r.name for r in table], [r.text for r in table]
        if not any(texts):
            log.error("%s: no descriptions to read (no description/english/chinese column, or all empty; see --column)",
                      args.csv)
            return 2
    results = extractor.extract_many(texts)
    for text, result in zip(texts, results, strict=True):
        print(json.dumps(result.to_json(), ensure_ascii=False))
        if args.explain and isinstance(extractor, LexiconExtractor):
            print(f"  language   {extractor.language(text)}")
            for m in extractor.mentions(text):
                print(f"  {m.status:10} {m.label:14} {m.form!r} @{m.start}")
    if args.out:
        with args.out.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["name", "description", "labels", "groups"])
            for name, text, r in zip(names, texts, results, strict=True):
                w.writerow([name, text, ",".join(r.labels), ",".join(r.groups)])
        covered = sum(bool(r.labels) for r in results)
        log.info("wrote %s: %d rows, %d with >= 1 label (%.1f%%)", args.out, len(results), covered,
                 100 * covered / max(len(results), 1))
    return 0
