"""The comparison table of a study, built from the MLflow store alone.

Rows are (backbone, initialisation) cells; each row joins the cell's evaluation run (tag ``kind=eval``) with its
training runs (tag ``kind=train``): how the evaluated checkpoint was selected (tag ``selection``: ``last`` or
``best-val:<metric>``, with the step), EMER metrics with bootstrap intervals, training wall time summed over
the stages, and mean training throughput. Baselines are evaluation runs without training runs.

Metric names in MLflow are those of ``affectgpt.run_metrics`` (written by ``affectgpt eval`` and training).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from affectgpt.run_metrics import HEADLINE, TRAIN_LOSS, TRAIN_TOKENS_PER_S, TRAIN_WALL_S, eval_key

log = logging.getLogger(__name__)


@dataclass
class Row:
    backbone: str
    init: str
    finetune: str = "-"  # full | lora for trained cells, "-" for baselines
    selection: str = "-"  # how the evaluated checkpoint was chosen: last | best-val:<metric> (- for baselines)
    selected_step: int | None = None
    metrics: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # name -> (value, lo, hi)
    train_seconds: float | None = None
    tokens_per_s: float | None = None
    eval_run: str = ""
    train_runs: list[str] = field(default_factory=list)


def collect(uri: str, experiment: str) -> list[Row]:
    """One Row per evaluated cell of ``experiment`` (newest evaluation run wins)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise LookupError(f"no experiment {experiment!r} in {uri} (experiments: {', '.join(names) or 'none'})")
    runs = client.search_runs([exp.experiment_id], max_results=5000, order_by=["attributes.start_time ASC"])
    evals: dict[str, object] = {}
    trains: dict[str, list[object]] = {}
    for run in runs:
        tags = run.data.tags
        if run.info.status != "FINISHED" or "cell" not in tags:
            continue
        if tags.get("kind") == "eval":
            evals[tags["cell"]] = run
        elif tags.get("kind") == "train":
            trains.setdefault(tags["cell"], []).append(run)
    rows = []
    for cell, run in evals.items():
        m = run.data.metrics
        tags = run.data.tags
        step = tags.get("selected_step")
        row = Row(backbone=tags.get("backbone", "?"), init=tags.get("init", "?"), finetune=tags.get("finetune", "-"),
                  eval_run=run.info.run_id, selection=tags.get("selection", "-"),
                  selected_step=int(step) if step else None)
        for key, _ in HEADLINE:
            if eval_key(key) in m:
                row.metrics[key] = (m[eval_key(key)], m.get(eval_key(key, "lo"), math.nan),
                                    m.get(eval_key(key, "hi"), math.nan))
        stages = trains.get(cell, [])
        if stages:
            row.train_runs = [r.info.run_id for r in stages]
            row.train_seconds = sum(r.data.metrics.get(TRAIN_WALL_S, 0.0) for r in stages)
            speeds = [r.data.metrics[TRAIN_TOKENS_PER_S] for r in stages if TRAIN_TOKENS_PER_S in r.data.metrics]
            row.tokens_per_s = sum(speeds) / len(speeds) if speeds else None
        rows.append(row)
    rows.sort(key=lambda r: (-r.metrics.get("avg", (-1.0,))[0], r.backbone, r.init, r.finetune))
    return rows


def _cell(value: tuple[float, float, float] | None) -> str:
    if value is None:
        return "-"
    v, lo, hi = value
    return f"{v:.3f}" if math.isnan(lo) else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["backbone", "init", "finetune", "selection", *(label for _, label in HEADLINE), "train s", "tokens/s"]
    body = [
        [
            r.backbone,
            r.init,
            r.finetune,
            r.selection if r.selected_step is None else f"{r.selection} (step {r.selected_step})",
            *(_cell(r.metrics.get(key)) for key, _ in HEADLINE),
            "-" if r.train_seconds is None else f"{r.train_seconds:.0f}",
            "-" if r.tokens_per_s is None else f"{r.tokens_per_s:.0f}",
        ]
        for r in rows
    ]
    return header, body


def to_text(rows: list[Row]) -> str:
    header, body = table(rows)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_markdown(rows: list[Row]) -> str:
    header, body = table(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines)


def plot(rows: list[Row], uri: str, path: Path) -> None:
    """Bar chart of the metrics with their intervals, and the training-loss curves of every cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(14, 5))
    labels = [f"{r.backbone}\n{r.init}" + ("" if r.finetune in ("full", "-") else f" {r.finetune}") for r in rows]
    width = 0.8 / len(HEADLINE)
    x = np.arange(len(rows))
    for i, (key, label) in enumerate(HEADLINE):
        values = np.array([r.metrics.get(key, (np.nan, np.nan, np.nan)) for r in rows], dtype=float).reshape(-1, 3)
        err = np.abs(values[:, 1:].T - values[:, 0])
        bars.bar(x + i * width, values[:, 0], width, yerr=np.nan_to_num(err), capsize=2, label=label)
    bars.set_xticks(x + width * (len(HEADLINE) - 1) / 2, labels, fontsize=7)
    bars.set_ylim(0, 1)
    bars.set_title("EMER metrics (95% bootstrap interval)")
    bars.legend(fontsize=8)
    for r in rows:
        offset = 0
        for run_id in r.train_runs:
            history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, TRAIN_LOSS))
            if history:
                steps, losses = zip(*history, strict=True)
                stage = client.get_run(run_id).data.tags.get("stage", "?")
                curves.plot([s + offset for s in steps], losses, label=f"{r.backbone} / {r.init} (stage {stage})")
                offset += steps[-1] + 1
    curves.set_xlabel("step (stages concatenated)")
    curves.set_ylabel("training loss")
    curves.set_title("Training loss")
    if curves.lines:
        curves.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(rows: list[Row], uri: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(to_markdown(rows) + "\n", encoding="utf-8")
    (out / "compare.json").write_text(json.dumps([asdict(r) for r in rows], indent=2), encoding="utf-8")
    plot(rows, uri, out / "compare.png")
