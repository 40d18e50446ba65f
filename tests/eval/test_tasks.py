"""The benchmark tasks' scorers and the emotion wheels, on cases computed by hand."""

from __future__ import annotations

import pytest

from affectgpt.eval.lexicon import LexiconError
from affectgpt.eval.tasks import score_task, valence, weighted_f1
from affectgpt.eval.wheels import Wheel, load_wheels


def test_discrete_hit_rate_and_single_group_accuracy():
    gt = [["happy"], ["sad"], ["angry"], ["worried"]]
    pred = [
        ["joyful"],  # happy group: hit, one group -> accurate
        ["sad", "angry"],  # sad among two groups: hit, but not accurate
        [],  # empty: miss
        ["zorbish"],  # outside the lexicon: its own group, a miss, counted
    ]
    m = score_task("discrete", gt, pred)
    assert m["hit_rate"] == pytest.approx(2 / 4)
    assert m["accuracy"] == pytest.approx(1 / 4)
    assert m["single_group_rate"] == pytest.approx(2 / 4)  # "joyful" and "zorbish" name one group each
    assert m["primary"] == m["hit_rate"] and m["primary_metric"] == "hit_rate"
    assert m["pred_empty"] == 1
    assert m["unknown_labels"]["pred"] == {"zorbish": 1}
    assert m["outside_wheel"]["pred"] == {"zorbish": 1}


def test_discrete_reports_empty_ground_truth_apart():
    m = score_task("discrete", [["happy"], []], [["happy"], []])
    assert (m["n"], m["n_scored"], m["empty_gt"]) == (2, 1, {"n": 1, "pred_empty": 1})
    assert m["hit_rate"] == 1.0
    none = score_task("discrete", [[]], [["happy"]])
    assert none["hit_rate"] is None and none["n_scored"] == 0


def test_valence_votes():
    assert valence(["happy", "relieved"], _lex()) == "positive"
    assert valence(["happy", "sad", "angry"], _lex()) == "negative"
    assert valence(["happy", "sad"], _lex()) == "neutral"  # a tie
    assert valence(["calm"], _lex()) == "neutral"
    assert valence([], _lex()) == "neutral"
    assert valence(["zorbish", "Angrily"], _lex()) == "negative"  # unknown words do not vote
    assert valence(["Positive"], _lex()) == "positive"  # the valence word itself


def test_sentiment_weighted_f1_and_accuracy():
    gt = [["positive"], ["positive"], ["positive"], ["negative"], ["neutral"], ["sad"]]
    pred = [["happy"], ["sad"], [], ["angry"], ["happy"], ["zorbish"]]
    m = score_task("sentiment", gt, pred)
    # scored: the 5 non-neutral samples (gt "sad" is negative); the neutral one is counted apart
    assert (m["n"], m["n_scored"], m["neutral_gt"]) == (6, 5, 1)
    # y_true P P P N N, y_pred P N neutral N neutral
    assert m["accuracy"] == pytest.approx(2 / 5)
    # positive: precision 1/1, recall 1/3 -> F1 0.5; negative: precision 1/2, recall 1/2 -> F1 0.5
    assert m["weighted_f1"] == pytest.approx((3 * 0.5 + 2 * 0.5) / 5)
    assert m["primary"] == m["weighted_f1"]
    assert m["pred_empty"] == 1
    assert m["pred_valence"] == {"neutral": 2, "positive": 1, "negative": 2}
    assert m["unknown_labels"] == {"gt": {}, "pred": {"zorbish": 1}}


def test_weighted_f1_hand_case():
    assert weighted_f1(["positive", "negative"], ["positive", "positive"]) == pytest.approx(
        (2 * 0.5 * 1 / 1.5 + 0.0) / 2)
    assert weighted_f1([], []) is None


def test_open_vocabulary_primary_is_level2_avg():
    m = score_task("open_vocabulary", [["happy", "sad"]], [["joyful"]], bootstrap=0)
    assert m["level2"]["accuracy_s"] == 1.0 and m["level2"]["recall_s"] == 0.5
    assert m["primary"] == pytest.approx(0.75)


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="unknown task 'ranking'"):
        score_task("ranking", [], [])


def test_wheel_file_regroups_and_counts_labels_outside_it(tmp_path):
    path = tmp_path / "mini.tsv"
    path.write_text("# a two-group wheel\nlabel\tlevel1\tlevel2\njoy\tgood\tjoy\nsad\tbad\tsadness\n"
                    "angry\tbad\tanger\n", encoding="utf-8")
    wheel = Wheel.load(path)
    assert wheel.name == "mini"
    assert wheel.group("joyful", "level1") == "good"  # "joy" is read through the lexicon as "joyful"
    assert wheel.group("happy", "level1") == "happy"  # outside the wheel: its own group
    # sad and angry share level1 "bad" on this wheel, not on the shipped one
    m = score_task("discrete", [["sad"]], [["angry"]], wheels=[wheel])
    assert m["hit_rate"] == 1.0 and m["outside_wheel"] == {"gt": {}, "pred": {}}
    shipped = score_task("discrete", [["sad"]], [["angry"]])
    assert shipped["hit_rate"] == 0.0


def test_several_wheels_are_scored_apart_and_averaged(tmp_path):
    path = tmp_path / "mini.tsv"
    path.write_text("sad\tbad\tsadness\nangry\tbad\tanger\n", encoding="utf-8")
    wheels = load_wheels(["default", path])
    m = score_task("discrete", [["sad"]], [["angry"]], wheels=wheels)
    assert m["wheels"]["default"]["hit_rate"] == 0.0 and m["wheels"]["mini"]["hit_rate"] == 1.0
    assert m["hit_rate"] == 0.5
    ov = score_task("open_vocabulary", [["sad"]], [["angry"]], wheels=wheels, bootstrap=0)
    assert ov["wheels"]["mini"]["level1"]["avg"] == 1.0 and ov["wheels"]["default"]["level1"]["avg"] == 0.0
    assert ov["level1"]["avg"] == 0.5


def test_bad_wheel_file_names_the_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("joy\tgood\tjoy\nsad\tbad\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=r"bad.tsv, line 2: expected 3"):
        Wheel.load(path)
    path.write_text("joy\tgood\tjoy\njoyful\tbad\tother\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=r"line 2: 'joyful' .* already placed at line 1"):
        Wheel.load(path)


def _lex():
    from affectgpt.eval.lexicon import default_lexicon

    return default_lexicon()
