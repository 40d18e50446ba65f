"""Chinese against English labels on EMER-Fine: does the Chinese lexicon land where the English one does?

  .venv/bin/python benchmarks/zh_en_agreement.py [--csv ../shared/data/emer-fine/final-EMER-reason.csv]
      [--worst 15] [--json OUT]

Every row of the EMER-Fine release has a Chinese description and its English translation. The lexicon
extractor reads each (``--lang`` forced per column, so a detection slip cannot flatter the numbers); the
English labels play the ground truth and the Chinese ones the prediction in the EMER metrics (Accuracy_s,
Recall_s, F_s at wheel levels 2 and 1, bootstrap 95% intervals). Printed: that table, the coverage of each
language (rows with at least one label), and the rows that disagree most (lowest level-1 F, then level-2 F)
with both label lists, for inspection. The second table row is the floor: the most frequent English labels
predicted for every row, an agreement that owes nothing to the Chinese text.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from affectgpt.eval.extract import LexiconExtractor
from affectgpt.eval.metrics import emer_metrics, most_frequent_labels
from affectgpt.eval.tables import read_table
from affectgpt.eval.wheels import Wheel

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "emer-fine" / "final-EMER-reason.csv"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="EMER-Fine CSV with chinese and english columns")
    p.add_argument("--worst", type=int, default=15, help="disagreeing rows to list (default: 15)")
    p.add_argument("--json", type=Path, help="also write the metrics, coverage and worst rows here")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    zh_rows, en_rows = read_table(args.csv, text_column="chinese"), read_table(args.csv, text_column="english")
    names = [r.name for r in en_rows]
    en = [e.labels for e in LexiconExtractor(lang="en").extract_many([r.text for r in en_rows])]
    zh = [e.labels for e in LexiconExtractor(lang="zh").extract_many([r.text for r in zh_rows])]

    metrics = emer_metrics(en, zh, bootstrap=1000)
    constant = most_frequent_labels(en)
    floor = emer_metrics(en, [constant] * len(en), bootstrap=0)
    coverage = {"en": sum(map(bool, en)) / len(en), "zh": sum(map(bool, zh)) / len(zh)}

    print(f"{args.csv}: {len(names)} rows; English labels = reference, Chinese labels = prediction\n")
    print("| system | L2 Accuracy_s | L2 Recall_s | L2 F_s | L1 Accuracy_s | L1 Recall_s | L1 F_s |")
    print("|---|---|---|---|---|---|---|")
    for name, m in (("Chinese vs English", metrics), (f"constant {constant} vs English", floor)):
        cells = []
        for level in ("level2", "level1"):
            for k in ("accuracy_s", "recall_s", "f_s"):
                ci = m[level].get("ci95", {}).get(k)
                cells.append(f"{m[level][k]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nscored rows (English labels not empty): {metrics['n_scored']} of {metrics['n']}")
    print("| language | rows with >= 1 label | coverage |")
    print("|---|---|---|")
    for lang, labels in (("en", en), ("zh", zh)):
        print(f"| {lang} | {sum(map(bool, labels))} / {len(labels)} | {coverage[lang]:.1%} |")

    worst = sorted(range(len(names)), key=lambda i: (_f(en[i], zh[i], "level1"), _f(en[i], zh[i], "level2")))
    worst = worst[: args.worst]
    print(f"\n{len(worst)} rows that disagree most (level-1 F, level-2 F):")
    print("| name | L1 F | L2 F | English labels | Chinese labels |")
    print("|---|---|---|---|---|")
    for i in worst:
        print(f"| {names[i]} | {_f(en[i], zh[i], 'level1'):.2f} | {_f(en[i], zh[i], 'level2'):.2f} | "
              f"{', '.join(en[i]) or '-'} | {', '.join(zh[i]) or '-'} |")
    if args.json:
        rows = [{"name": names[i], "en": en[i], "zh": zh[i]} for i in worst]
        args.json.write_text(json.dumps({"metrics": metrics, "coverage": coverage, "worst": rows},
                                        ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _f(reference: list[str], other: list[str], level: str) -> float:
    """Set F of one row's groups at ``level`` (1.0 when both are empty)."""
    wheel = Wheel.default()
    a, b = wheel.groups_of(reference, level), wheel.groups_of(other, level)
    if not a and not b:
        return 1.0
    return 2 * len(a & b) / (len(a) + len(b))


if __name__ == "__main__":
    main()
