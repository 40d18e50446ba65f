"""Score predictions against ground truth: aligned by sample name, labels taken from a labels column or
extracted from descriptions, metrics for the model next to a constant most-frequent-labels baseline.

``evaluate`` is the entry point for code (the eval command, the demo, tracking); ``score_tables`` reads the
two CSVs the ``score`` command is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from affectgpt.eval.extract import Extractor, LexiconExtractor
from affectgpt.eval.metrics import LEVELS, METRICS, most_frequent_labels
from affectgpt.eval.tables import Row, TableError, read_table
from affectgpt.eval.tasks import score_task
from affectgpt.eval.wheels import Wheel

Source = Literal["auto", "labels", "description"]


def evaluate(
    ground_truth: Mapping[str, Sequence[str]],
    predictions: Mapping[str, Sequence[str]],
    train_labels: Sequence[Sequence[str]] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    task: str = "open_vocabulary",
    wheels: Sequence[Wheel] | None = None,
) -> dict:
    """Metrics of ``predictions`` (name -> labels) against ``ground_truth`` (name -> labels) for ``task``
    (``affectgpt.eval.tasks``) on ``wheels`` (default: the shipped wheel).

    With ``train_labels``, also the constant baseline that predicts the most frequent training labels for
    every sample, scored by the same code. Raises ValueError naming missing or extra sample names.
    """
    _check_names(set(ground_truth), set(predictions), "ground truth", "predictions")
    names = sorted(ground_truth)  # bootstrap draws then depend on the samples, not on their file order
    gt = [list(ground_truth[n]) for n in names]
    scoring = {"task": task, "wheels": wheels, "bootstrap": bootstrap, "seed": seed}
    result = {"model": score_task(gt=gt, pred=[list(predictions[n]) for n in names], **scoring)}
    if train_labels is not None:
        constant = most_frequent_labels(train_labels)
        baseline = score_task(gt=gt, pred=[constant] * len(gt), **scoring)
        result["baselines"] = {"most_frequent": {"labels": constant, **baseline}}
    return result


def table_labels(rows: list[Row], source: Source, extractor: Extractor, path: Path) -> dict[str, list[str]]:
    """name -> labels of a table: its labels column, or labels extracted from its descriptions."""
    has_labels = rows[0].labels is not None
    if source == "auto":
        source = "labels" if has_labels else "description"
    if source == "labels":
        if not has_labels:
            raise TableError(f"{path}: --source labels, but the table has no 'labels' column")
        return {r.name: list(r.labels or []) for r in rows}
    empty = [r for r in rows if not r.text]
    if empty:
        raise TableError(f"{path}, row {empty[0].line} ({empty[0].name}): empty description")
    extracted = extractor.extract_many([r.text for r in rows])
    return {r.name: e.labels for r, e in zip(rows, extracted, strict=True)}


def score_tables(
    gt_path: str | Path,
    pred_path: str | Path,
    gt_source: Source = "auto",
    pred_source: Source = "auto",
    extractor: Extractor | None = None,
    train_path: str | Path | None = None,
    bootstrap: int = 1000,
    task: str = "open_vocabulary",
    wheels: Sequence[Wheel] | None = None,
) -> dict:
    """Read and score two tables (and, with ``train_path``, the most-frequent baseline from its labels)."""
    extractor = extractor or LexiconExtractor()
    gt_path, pred_path = Path(gt_path), Path(pred_path)
    gt_rows, pred_rows = read_table(gt_path), read_table(pred_path)
    _check_names({r.name for r in gt_rows}, {r.name for r in pred_rows}, str(gt_path), str(pred_path))
    gt = table_labels(gt_rows, gt_source, extractor, gt_path)
    pred = table_labels(pred_rows, pred_source, extractor, pred_path)
    train = None
    if train_path is not None:
        train_rows = read_table(train_path)
        train = list(table_labels(train_rows, "auto", extractor, Path(train_path)).values())
    result = evaluate(gt, pred, train_labels=train, bootstrap=bootstrap, task=task, wheels=wheels)
    result["inputs"] = {"gt": str(gt_path), "pred": str(pred_path), "train": str(train_path) if train_path else None}
    return result


def format_table(result: dict) -> str:
    """A plain-text table: one row per system (model, baselines), one column per level and metric (the
    task's own metrics for discrete and sentiment corpora)."""
    systems = {"model": result["model"], **result.get("baselines", {})}
    if result["model"].get("task", "open_vocabulary") != "open_vocabulary":
        return _format_task_table(systems)
    head = f"{'system':<14}" + "".join(f"{lvl + ' ' + m:>20}" for lvl in LEVELS for m in METRICS)
    lines = [head]
    for name, m in systems.items():
        cells = []
        for lvl in LEVELS:
            for k in METRICS:
                if m[lvl] is None:
                    cells.append(f"{'n/a':>20}")
                    continue
                ci = m[lvl].get("ci95", {}).get(k)
                span = f" [{ci[0]:.2f},{ci[1]:.2f}]" if ci else ""
                cells.append(f"{m[lvl][k]:.3f}{span}".rjust(20))
        lines.append(f"{name:<14}" + "".join(cells))
    model = result["model"]
    empty = model["empty_gt"]
    lines.append(
        f"samples: {model['n']} ({model['n_scored']} scored; {empty['n']} with empty ground truth, "
        f"{empty['pred_empty']} of them with an empty prediction too)"
    )
    return "\n".join(lines)


TASK_COLUMNS = {"discrete": ("hit_rate", "accuracy", "single_group_rate"), "sentiment": ("weighted_f1", "accuracy")}


def _format_task_table(systems: dict[str, dict]) -> str:
    model = next(iter(systems.values()))
    columns = TASK_COLUMNS[model["task"]]
    lines = [f"{'system':<14}" + "".join(f"{c:>20}" for c in columns)]
    for name, m in systems.items():
        lines.append(f"{name:<14}" + "".join(("n/a" if m[c] is None else f"{m[c]:.3f}").rjust(20) for c in columns))
    unknown = sum(model["unknown_labels"]["pred"].values())
    lines.append(f"task {model['task']}: {model['n']} samples, {model['n_scored']} scored; "
                 f"{model['pred_empty']} empty predictions; {unknown} predicted words outside the lexicon")
    return "\n".join(lines)


def _check_names(gt: set[str], pred: set[str], gt_where: str, pred_where: str) -> None:
    missing, extra = sorted(gt - pred), sorted(pred - gt)
    if missing:
        raise TableError(
            f"{pred_where}: no prediction for {len(missing)} name(s) of {gt_where}: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else "")
        )
    if extra:
        raise TableError(
            f"{pred_where}: {len(extra)} name(s) not in {gt_where}: {', '.join(extra[:5])}"
            + (" ..." if len(extra) > 5 else "")
        )
