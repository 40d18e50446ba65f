"""The score command: end to end on small CSVs, and clear errors on bad input."""

from __future__ import annotations

import json

import pytest

from affectgpt.cli import main


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def gt(tmp_path):
    return write(tmp_path / "gt.csv", 'name,subtitle,description,labels\na,hi,x,"sad,lonely"\nb,hi,x,angry\nc,hi,x,\n')


def test_score_descriptions_against_labels(tmp_path, gt, capsys):
    pred = write(
        tmp_path / "pred.csv",
        'name,description\na,"He is sad, not angry."\nb,"He looks furious and worried."\nc,"He is calm."\n',
    )
    train = write(tmp_path / "train.csv", 'name,labels\nt1,sad\nt2,"sad,angry"\nt3,sad\n')
    out = tmp_path / "m.json"
    assert main(["score", "--gt", str(gt), "--pred", str(pred), "--train", str(train),
                 "--bootstrap", "200", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "model" in table and "most_frequent" in table and "1 with empty ground truth" in table
    result = json.loads(out.read_text())
    model = result["model"]
    # a: G {sad, lonely} P {sad} -> p 1, r 1/2; b: G {angry} P {angry, anxious} -> p 1/2, r 1
    assert model["level2"]["accuracy_s"] == pytest.approx(3 / 4)
    assert model["level2"]["recall_s"] == pytest.approx(3 / 4)
    assert model["empty_gt"] == {"n": 1, "pred_empty": 0}
    assert result["baselines"]["most_frequent"]["labels"] == ["sad"]
    lo, hi = model["level2"]["ci95"]["avg"]
    assert lo <= model["level2"]["avg"] <= hi


def test_pred_source_description_ignores_a_labels_column(tmp_path, gt):
    pred = write(tmp_path / "pred.csv", 'name,description,labels\na,"He is sad.",angry\nb,"Angry.",angry\nc,x,\n')
    out = tmp_path / "m.json"
    assert main(["score", "--gt", str(gt), "--pred", str(pred), "--pred-source", "description",
                 "--bootstrap", "0", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["model"]["level2"]["accuracy_s"] == 1.0


@pytest.mark.parametrize(
    ("pred_text", "expected"),
    [
        ("name,labels\na,sad\nb,angry\n", ["pred.csv: no prediction for 1 name(s) of", "gt.csv: c"]),
        ("name,labels\na,sad\nb,angry\nc,\nd,sad\n", ["pred.csv: 1 name(s) not in", "gt.csv: d"]),
        ("name,labels\na,sad\nb,angry\na,sad\nc,\n", ["pred.csv, row 4: duplicate name 'a' (first at row 2)"]),
        ("", ["pred.csv is empty"]),
        ("name,labels\n", ["pred.csv has a header but no rows"]),
        ("id,labels\na,sad\n", ["pred.csv, row 1: no 'name' column"]),
        ("name,score\na,1\n", ["pred.csv, row 1: needs a 'description'", "or a 'labels' column"]),
        ("name,labels\n,sad\n", ["pred.csv, row 2: empty 'name'"]),
    ],
)
def test_bad_prediction_files_fail_with_a_clear_message(tmp_path, gt, caplog, pred_text, expected):
    pred = write(tmp_path / "pred.csv", pred_text)
    assert main(["score", "--gt", str(gt), "--pred", str(pred), "--bootstrap", "0"]) == 2
    record = caplog.records[-1]
    assert record.levelname == "ERROR"
    for part in expected:
        assert part in record.getMessage()


def test_missing_file_and_missing_labels_column(tmp_path, gt, caplog):
    assert main(["score", "--gt", str(gt), "--pred", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv does not exist" in caplog.text
    pred = write(tmp_path / "pred.csv", "name,description\na,x\nb,x\nc,x\n")
    assert main(["score", "--gt", str(gt), "--pred", str(pred), "--pred-source", "labels"]) == 2
    assert "has no 'labels' column" in caplog.text
