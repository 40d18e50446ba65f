"""EMER set-overlap metrics on emotion-wheel groups, with bootstrap confidence intervals.

For each sample, ground-truth labels G and predicted labels P are mapped to emotion-wheel groups (level 2:
synonym groups such as anxious/worried/nervous; level 1: the wheel's core emotions), then

    Accuracy_s = mean |G n P| / |P|   (0 when P is empty)      -- the wheel "precision"
    Recall_s   = mean |G n P| / |G|
    avg        = (Accuracy_s + Recall_s) / 2                   -- the EMER papers' headline number
    F_s        = 2 Accuracy_s Recall_s / (Accuracy_s + Recall_s)

over the samples whose G is non-empty. Samples with empty G have no recall; they are counted and reported
apart (``empty_gt``: how many, and how often the prediction is empty too), never dropped silently. Level 2
is the headline (it plays the role of the papers' GPT synonym grouping); level 1 is the coarse view.

With several emotion wheels (``affectgpt.eval.wheels``) each wheel is scored apart (``wheels``) and the
top-level numbers are their mean, as MER-UniBench's "M-avg" (no interval: the wheels' intervals are kept).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from affectgpt.eval.lexicon import Lexicon, default_lexicon
from affectgpt.eval.wheels import LEVELS, Wheel

METRICS = ("accuracy_s", "recall_s", "avg", "f_s")


def per_sample(gt: list[set[str]], pred: list[set[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample precision |G n P|/|P| (0 for empty P) and recall |G n P|/|G|; every G must be non-empty."""
    hits = np.array([len(g & p) for g, p in zip(gt, pred, strict=True)], dtype=float)
    n_pred = np.array([len(p) for p in pred], dtype=float)
    n_gt = np.array([len(g) for g in gt], dtype=float)
    precision = np.divide(hits, n_pred, out=np.zeros_like(hits), where=n_pred > 0)
    return precision, hits / n_gt


def summarise(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    acc, rec = float(precision.mean()), float(recall.mean())
    return {"accuracy_s": acc, "recall_s": rec, "avg": (acc + rec) / 2, "f_s": _f(acc, rec)}


def bootstrap_ci(
    precision: np.ndarray, recall: np.ndarray, samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, list[float]]:
    """Percentile bootstrap over samples (resampled with replacement) for each of METRICS."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(precision), size=(samples, len(precision)))
    acc, rec = precision[idx].mean(axis=1), recall[idx].mean(axis=1)
    f = np.divide(2 * acc * rec, acc + rec, out=np.zeros_like(acc), where=(acc + rec) > 0)
    lo, hi = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100
    values = {"accuracy_s": acc, "recall_s": rec, "avg": (acc + rec) / 2, "f_s": f}
    return {k: [float(np.percentile(v, lo)), float(np.percentile(v, hi))] for k, v in values.items()}


def emer_metrics(
    gt: Sequence[Sequence[str]],
    pred: Sequence[Sequence[str]],
    lexicon: Lexicon | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    wheels: Sequence[Wheel] | None = None,
) -> dict:
    """All metrics for aligned lists of ground-truth and predicted label lists (one pair per sample), on
    ``wheels`` (default: the shipped wheel)."""
    if len(gt) != len(pred):
        raise ValueError(f"{len(gt)} ground-truth samples but {len(pred)} predictions")
    lexicon = lexicon or default_lexicon()
    wheels = list(wheels or [Wheel.default(lexicon)])
    scored = [i for i, g in enumerate(gt) if g]
    empty = [i for i, g in enumerate(gt) if not g]
    out: dict = {
        "n": len(gt),
        "n_scored": len(scored),
        "empty_gt": {
            "n": len(empty),
            "pred_empty": sum(1 for i in empty if not pred[i]),
        },
        "pred_empty": sum(1 for i in scored if not pred[i]),
        "pred_empty_rate": (sum(1 for i in scored if not pred[i]) / len(scored)) if scored else None,
        "unknown_labels": {
            "gt": unknown_labels(gt, lexicon),
            "pred": unknown_labels(pred, lexicon),
        },
    }
    per_wheel = {w.name: _wheel_metrics(w, [gt[i] for i in scored], [pred[i] for i in scored], bootstrap, seed)
                 for w in wheels}
    if len(wheels) == 1:
        out.update(per_wheel[wheels[0].name])
    else:
        out["wheels"] = per_wheel
        for level in LEVELS:
            out[level] = None if not scored else {
                k: float(np.mean([m[level][k] for m in per_wheel.values()])) for k in METRICS}
    if bootstrap:
        out["bootstrap"] = {"samples": bootstrap, "confidence": 0.95, "seed": seed}
    return out


def _wheel_metrics(wheel: Wheel, gt: list[Sequence[str]], pred: list[Sequence[str]], bootstrap: int,
                   seed: int) -> dict:
    out: dict = {"outside_wheel": {"gt": wheel.outside(gt), "pred": wheel.outside(pred)}}
    for level in LEVELS:
        if not gt:
            out[level] = None
            continue
        precision, recall = per_sample([wheel.groups_of(g, level) for g in gt],
                                       [wheel.groups_of(p, level) for p in pred])
        out[level] = summarise(precision, recall)
        if bootstrap:
            out[level]["ci95"] = bootstrap_ci(precision, recall, samples=bootstrap, seed=seed)
    return out


def most_frequent_labels(train_labels: Sequence[Sequence[str]], lexicon: Lexicon | None = None) -> list[str]:
    """The constant baseline's prediction: the k most frequent training labels (canonical forms), k being the
    rounded mean number of labels of a labelled training sample (at least 1). Ties break alphabetically."""
    lexicon = lexicon or default_lexicon()
    labelled = [list(dict.fromkeys(lexicon.normalise(w).label for w in ls)) for ls in train_labels if ls]
    if not labelled:
        raise ValueError("no training sample has labels: the most-frequent baseline needs some")
    counts = Counter(w for ls in labelled for w in ls)
    k = max(1, round(sum(map(len, labelled)) / len(labelled)))
    return sorted(counts, key=lambda w: (-counts[w], w))[:k]


def _f(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def unknown_labels(label_lists: Sequence[Sequence[str]], lexicon: Lexicon) -> dict[str, int]:
    counts = Counter(w for ls in label_lists for w in ls if not lexicon.is_known(lexicon.normalise(w).label))
    return dict(counts.most_common())
