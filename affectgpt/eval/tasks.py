"""Benchmark tasks: how a corpus's ground truth is scored, as MER-UniBench scores its three kinds of datasets.

* ``open_vocabulary`` (OV-MERD+, EMER-Fine): set overlap on wheel groups (``metrics.emer_metrics``); primary
  score: level-2 ``avg`` (mean of Accuracy_s and Recall_s).
* ``discrete`` (MER2023/2024, MELD, IEMOCAP: one emotion class per sample): at wheel level 1,
  ``hit_rate`` = share of samples whose ground-truth group is among the predicted groups (primary), and
  ``accuracy`` = share whose prediction names exactly one group and it is the ground truth's (a prediction
  listing several groups never counts as accurate); ``single_group_rate`` says how often that was possible.
* ``sentiment`` (CMU-MOSI/MOSEI, CH-SIMS): each sample's valence (positive / negative / neutral) is the vote of
  its labels' valences in the lexicon (more positive than negative labels: positive; fewer: negative; a tie,
  no label or only neutral ones: neutral). A ground-truth label may also be the valence word itself.
  Scored over the samples with non-neutral ground truth, as the benchmark does: ``weighted_f1`` (F1 of the
  positive and negative classes weighted by their support; primary) and ``accuracy``.

Every task reports its sample counts, empty predictions and the labels outside the lexicon (``unknown_labels``),
so nothing is dropped silently. Open-vocabulary and discrete scores are computed on each wheel given and
averaged (``wheels``); sentiment does not use wheels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from affectgpt.eval.lexicon import VALENCES, Lexicon, default_lexicon
from affectgpt.eval.metrics import emer_metrics, unknown_labels
from affectgpt.eval.wheels import Wheel

TASKS = ("open_vocabulary", "discrete", "sentiment")
# The primary score of each task: the benchmark's headline is the mean of these over its corpora.
PRIMARY = {"open_vocabulary": "level2/avg", "discrete": "hit_rate", "sentiment": "weighted_f1"}


def score_task(
    task: str,
    gt: Sequence[Sequence[str]],
    pred: Sequence[Sequence[str]],
    lexicon: Lexicon | None = None,
    wheels: Sequence[Wheel] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """The metrics of ``task`` for aligned ground-truth and predicted label lists, with ``primary`` set."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if len(gt) != len(pred):
        raise ValueError(f"{len(gt)} ground-truth samples but {len(pred)} predictions")
    lexicon = lexicon or default_lexicon()
    wheels = list(wheels or [Wheel.default(lexicon)])
    if task == "open_vocabulary":
        out = emer_metrics(gt, pred, lexicon, bootstrap=bootstrap, seed=seed, wheels=wheels)
        out["primary"] = out["level2"]["avg"] if out["level2"] else None
    elif task == "discrete":
        out = discrete_metrics(gt, pred, lexicon, wheels)
    else:
        out = sentiment_metrics(gt, pred, lexicon)
    return {"task": task, "primary_metric": PRIMARY[task], **out}


def discrete_metrics(gt: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], lexicon: Lexicon,
                     wheels: Sequence[Wheel]) -> dict:
    scored = [i for i, g in enumerate(gt) if g]
    out: dict = {**_counts(gt, pred, scored, lexicon)}
    per_wheel = {}
    for wheel in wheels:
        hits, exact, single = [], [], []
        for i in scored:
            g, p = wheel.groups_of(gt[i], "level1"), wheel.groups_of(pred[i], "level1")
            hits.append(bool(g & p))
            single.append(len(p) == 1)
            exact.append(len(p) == 1 and p <= g)
        per_wheel[wheel.name] = {
            "hit_rate": _mean(hits), "accuracy": _mean(exact), "single_group_rate": _mean(single),
            "outside_wheel": {"gt": wheel.outside(gt), "pred": wheel.outside(pred)},
        }
    if len(wheels) == 1:
        out.update(per_wheel[wheels[0].name])
    else:
        out["wheels"] = per_wheel
        for key in ("hit_rate", "accuracy", "single_group_rate"):
            values = [m[key] for m in per_wheel.values()]
            out[key] = None if None in values else float(np.mean(values))
    out["primary"] = out["hit_rate"]
    return out


def valence(labels: Sequence[str], lexicon: Lexicon) -> str:
    """The vote of the labels' valences: positive, negative or neutral (a tie, none, or only neutral ones).
    Words the lexicon does not know have no valence and do not vote."""
    votes = Counter()
    for word in labels:
        if word.strip().lower() in VALENCES:
            votes[word.strip().lower()] += 1
        elif lexicon.normalise(word).valence is not None:
            votes[lexicon.normalise(word).valence] += 1
    if votes["positive"] > votes["negative"]:
        return "positive"
    if votes["negative"] > votes["positive"]:
        return "negative"
    return "neutral"


def sentiment_metrics(gt: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], lexicon: Lexicon) -> dict:
    truth = [valence(g, lexicon) if g else None for g in gt]
    scored = [i for i, t in enumerate(truth) if t in ("positive", "negative")]
    out: dict = {**_counts(gt, pred, scored, lexicon)}
    out["neutral_gt"] = sum(1 for t in truth if t == "neutral")
    y_true = [truth[i] for i in scored]
    y_pred = [valence(pred[i], lexicon) for i in scored]
    out["pred_valence"] = dict(Counter(y_pred).most_common())
    out["accuracy"] = _mean([t == p for t, p in zip(y_true, y_pred, strict=True)])
    out["weighted_f1"] = weighted_f1(y_true, y_pred)
    out["primary"] = out["weighted_f1"]
    return out


def weighted_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float | None:
    """F1 of each ground-truth class weighted by its support (predicted classes absent from the ground truth,
    e.g. neutral, only lower the other classes' recall)."""
    if not y_true:
        return None
    support = Counter(y_true)
    total = 0.0
    for cls, n in support.items():
        tp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == p == cls)
        predicted = sum(1 for p in y_pred if p == cls)
        precision, recall = (tp / predicted if predicted else 0.0), tp / n
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        total += n * f1
    return total / len(y_true)


def _counts(gt: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scored: list[int],
            lexicon: Lexicon) -> dict:
    empty = [i for i, g in enumerate(gt) if not g]
    return {
        "n": len(gt),
        "n_scored": len(scored),
        "empty_gt": {"n": len(empty), "pred_empty": sum(1 for i in empty if not pred[i])},
        "pred_empty": sum(1 for i in scored if not pred[i]),
        "unknown_labels": {"gt": _unknown(gt, lexicon), "pred": _unknown(pred, lexicon)},
    }


def _unknown(label_lists: Sequence[Sequence[str]], lexicon: Lexicon) -> dict[str, int]:
    """Words outside the lexicon; valence words are the sentiment task's own vocabulary."""
    return unknown_labels([[w for w in ls if w.strip().lower() not in VALENCES] for ls in label_lists], lexicon)


def _mean(values: list[bool]) -> float | None:
    return float(np.mean(values)) if values else None
