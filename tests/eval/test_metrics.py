"""EMER metrics on small hand-computed examples; bootstrap intervals; the most-frequent baseline."""

from __future__ import annotations

import numpy as np
import pytest

from affectgpt.eval.metrics import bootstrap_ci, emer_metrics, most_frequent_labels, per_sample
from affectgpt.eval.scoring import evaluate


def test_per_sample_precision_and_recall_by_hand():
    gt = [{"a", "b"}, {"a"}, {"c"}]
    pred = [{"a", "x", "y"}, set(), {"c"}]
    precision, recall = per_sample(gt, pred)
    # sample 1: |G n P| = 1, |P| = 3, |G| = 2; sample 2: empty P -> precision 0; sample 3: exact
    assert precision.tolist() == pytest.approx([1 / 3, 0.0, 1.0])
    assert recall.tolist() == pytest.approx([1 / 2, 0.0, 1.0])


def test_emer_metrics_level2_and_level1_by_hand():
    gt = [["worried", "sad"], ["happy"], ["angry"]]
    pred = [["anxious", "angry"], ["joyful", "excited"], []]
    m = emer_metrics(gt, pred, bootstrap=0)
    # level 2 (synonym groups): s1 G={anxious, sad} P={anxious, angry} (worried and anxious share a group):
    #   hits 1, |P| 2, |G| 2 -> p 1/2, r 1/2
    #   s2 G={joyful} P={joyful, excited}: p 1/2, r 1; s3 P empty: p 0, r 0
    acc, rec = (1 / 2 + 1 / 2 + 0) / 3, (1 / 2 + 1 + 0) / 3
    assert m["level2"]["accuracy_s"] == pytest.approx(acc)
    assert m["level2"]["recall_s"] == pytest.approx(rec)
    assert m["level2"]["avg"] == pytest.approx((acc + rec) / 2)
    assert m["level2"]["f_s"] == pytest.approx(2 * acc * rec / (acc + rec))
    # level 1: s1 G={fearful, sad} P={fearful, angry}: 1/2, 1/2; s2 G={happy} P={happy}: 1, 1; s3: 0, 0
    assert m["level1"]["accuracy_s"] == pytest.approx((1 / 2 + 1) / 3)
    assert m["level1"]["recall_s"] == pytest.approx((1 / 2 + 1) / 3)
    assert m["n"] == 3 and m["n_scored"] == 3 and m["pred_empty_rate"] == pytest.approx(1 / 3)
    assert "ci95" not in m["level2"]


def test_empty_ground_truth_is_reported_apart_not_dropped():
    gt = [["happy"], [], []]
    pred = [["happy"], [], ["sad"]]
    m = emer_metrics(gt, pred, bootstrap=0)
    assert m["n"] == 3 and m["n_scored"] == 1
    assert m["empty_gt"] == {"n": 2, "pred_empty": 1}
    assert m["level2"]["accuracy_s"] == 1.0  # computed over the scored sample only

    only_empty = emer_metrics([[]], [["sad"]], bootstrap=0)
    assert only_empty["level1"] is None and only_empty["empty_gt"] == {"n": 1, "pred_empty": 0}


def test_unknown_labels_still_match_themselves_and_are_counted():
    m = emer_metrics([["zorbish", "happy"]], [["zorbish"]], bootstrap=0)
    assert m["level2"]["accuracy_s"] == 1.0 and m["level2"]["recall_s"] == 0.5
    assert m["unknown_labels"] == {"gt": {"zorbish": 1}, "pred": {"zorbish": 1}}


def test_bootstrap_interval_brackets_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small = rng.random(20), rng.random(20)
    large = rng.random(2000), rng.random(2000)
    ci_small = bootstrap_ci(*small, samples=500, seed=0)
    ci_large = bootstrap_ci(*large, samples=500, seed=0)
    for (p, r), ci in ((small, ci_small), (large, ci_large)):
        lo, hi = ci["accuracy_s"]
        assert lo <= p.mean() <= hi
        lo, hi = ci["avg"]
        assert lo <= (p.mean() + r.mean()) / 2 <= hi
    width = lambda ci: ci["recall_s"][1] - ci["recall_s"][0]  # noqa: E731
    assert width(ci_large) < width(ci_small) / 3
    # identical scores have a zero-width interval
    assert bootstrap_ci(np.ones(10), np.ones(10), samples=50)["f_s"] == [1.0, 1.0]


def test_most_frequent_labels_baseline():
    train = [["sad", "lonely"], ["sad"], ["Sadness", "angry"], [], ["angry", "hurt", "sad"]]
    # counts: sad 4 (Sadness -> sad), angry 2, lonely 1, hurt 1; mean labels of labelled samples 8/4 = 2
    assert most_frequent_labels(train) == ["sad", "angry"]
    with pytest.raises(ValueError, match="no training sample has labels"):
        most_frequent_labels([[], []])


def test_evaluate_adds_the_baseline_scored_by_the_same_code():
    gt = {"a": ["sad"], "b": ["angry"], "c": ["sad", "hurt"]}
    pred = {"a": ["sad"], "b": ["sad"], "c": ["hurt"]}
    result = evaluate(gt, pred, train_labels=[["sad"], ["sad"], ["happy"]], bootstrap=0)
    base = result["baselines"]["most_frequent"]
    assert base["labels"] == ["sad"]
    # the constant {sad} against G: a 1/1, b 0, c 1/1 precision; recall 1, 0, 1/2 (level 2: hurt != sad)
    assert base["level2"]["accuracy_s"] == pytest.approx(2 / 3)
    assert base["level2"]["recall_s"] == pytest.approx((1 + 0 + 1 / 2) / 3)
    assert result["model"]["level2"]["accuracy_s"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no prediction for 1 name"):
        evaluate(gt, {"a": ["sad"], "b": []}, bootstrap=0)
