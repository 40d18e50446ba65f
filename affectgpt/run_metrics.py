"""The MLflow metric names of training and evaluation runs, in one place: training writes its per-step names
(``TRAIN_*``, ``DATA_CORRUPT_SKIPPED``; ``affectgpt.train.session``), ``affectgpt eval`` and training's validation
write the evaluation names (``eval_metrics``, ``log_evaluation``, ``EVAL_*``), and whatever reads a run back
(``affectgpt compare``, the loss plot, benchmarks, tests) reads them from here.

``eval/accuracy_s``, ``eval/recall_s`` and ``eval/avg`` are emotion-wheel level 2, as the EMER papers report;
``eval/wheel_f1`` is F_s at level 1; each has ``_lo`` / ``_hi`` 95 % bootstrap bounds, and every level's
numbers are also kept under ``eval/<level>/<metric>``. Discrete and sentiment tasks add their own
(``eval/hit_rate``, ``eval/weighted_f1`` ...); ``eval/primary`` is the task's primary score.
"""

from __future__ import annotations

from pathlib import Path

from affectgpt.tracking import Tracker, TrackingConfig

HEADLINE = (("accuracy_s", "Accuracy_s"), ("recall_s", "Recall_s"), ("avg", "Avg"), ("wheel_f1", "Wheel F1"))
# Training, logged every log_every steps: the global token-mean loss, the learning rate, the mean optimizer
# step time, throughput, model FLOPs utilisation, the gradient norm (when DeepSpeed reports one) and, at the end,
# the run's wall time; data/corrupt_skipped counts samples skipped under data.on_corrupt=skip; with
# data.max_tokens_per_batch, train/rows_per_step is the mean forward passes (packed rows) per step over all ranks.
TRAIN_LOSS = "train/loss"
TRAIN_LR = "train/lr"
TRAIN_STEP_TIME_S = "train/step_time_s"
TRAIN_SAMPLES_PER_S = "train/samples_per_s"
TRAIN_TOKENS_PER_S = "train/tokens_per_s"
TRAIN_MFU = "train/mfu"
TRAIN_GRAD_NORM = "train/grad_norm"
TRAIN_WALL_S = "train/wall_s"
TRAIN_ROWS_PER_STEP = "train/rows_per_step"
DATA_CORRUPT_SKIPPED = "data/corrupt_skipped"
# Validation during training, beside eval_metrics' names: its seconds, and the best step so far and its value.
EVAL_SECONDS = "eval/seconds"
EVAL_BEST_STEP = "eval/best_step"
EVAL_BEST = "eval/best"
_ALIASES = (("accuracy_s", "level2/accuracy_s"), ("recall_s", "level2/recall_s"), ("avg", "level2/avg"),
            ("wheel_f1", "level1/f_s"))
_TASK_SCORES = ("primary", "hit_rate", "accuracy", "single_group_rate", "weighted_f1")


def eval_key(name: str, bound: str = "") -> str:
    """``eval/<name>``, or its interval bound with ``bound`` "lo" / "hi"."""
    return f"eval/{name}_{bound}" if bound else f"eval/{name}"


def eval_metrics(metrics: dict) -> dict[str, float]:
    """One system's entry of ``metrics.json`` (``affectgpt eval``) -> its MLflow metrics."""
    out: dict[str, float] = {"eval/n": float(metrics["n"])}
    for name in _TASK_SCORES:
        if metrics.get(name) is not None:
            out[eval_key(name)] = float(metrics[name])
    for level in ("level2", "level1"):
        values = metrics.get(level) or {}
        for name in ("accuracy_s", "recall_s", "avg", "f_s"):
            if name in values:
                out[eval_key(f"{level}/{name}")] = values[name]
                lo, hi = values.get("ci95", {}).get(name, (None, None))
                if lo is not None:
                    out[eval_key(f"{level}/{name}", "lo")], out[eval_key(f"{level}/{name}", "hi")] = lo, hi
    for key, source in _ALIASES:
        for bound in ("", "lo", "hi"):
            if eval_key(source, bound) in out:
                out[eval_key(key, bound)] = out[eval_key(source, bound)]
    return out


def log_evaluation(cfg: TrackingConfig, default_dir: str | Path, metrics: dict, run_name: str,
                   tags: dict[str, str], eval_dir: Path | None = None, shards: str | Path | None = None) -> str:
    """Record one system's metrics as a finished MLflow run (tag ``kind=eval``), with ``metrics.json`` and
    ``predictions.csv`` of ``eval_dir`` as artifacts and the split's ``shards`` as its test input; returns the
    run id."""
    tracker = Tracker.open(cfg, default_dir, run_name=run_name, tags={"kind": "eval", **tags},
                           inputs={"test": shards} if shards else None)
    # Four decimals are finer than any bootstrap interval here and keep the UI's columns readable;
    # metrics.json (an artifact of the run) keeps every digit.
    tracker.log_metrics({k: round(v, 4) for k, v in eval_metrics(metrics).items()}, step=0)
    for name in ("metrics.json", "predictions.csv"):
        if eval_dir is not None and (eval_dir / name).exists():
            tracker.log_artifact(eval_dir / name)
    tracker.close()
    return tracker.run_id
