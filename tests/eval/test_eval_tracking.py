"""`affectgpt eval` tracks itself: with tracking on, one finished MLflow run per system (model and baselines),
named and tagged from the command's settings, with the metric names of affectgpt.run_metrics that
`affectgpt compare` reads back. A real SQLite MLflow store; the settings come from a --config file."""

from __future__ import annotations

import json

import pytest
import yaml
from mlflow import MlflowClient

from affectgpt.cli import main
from affectgpt.compare import collect
from affectgpt.run_metrics import HEADLINE, eval_key
from shards.index import read_index
from tests.eval.test_generate import model_dir, recipe, test_shards  # noqa: F401 - the module's fixtures


@pytest.mark.slow
def test_eval_logs_one_run_per_system_that_compare_reads(model_dir, test_shards, recipe, synth_corpus,  # noqa: F811
                                                         tmp_path):
    out = tmp_path / "eval"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(model_dir), "shards": str(test_shards), "out": str(out), "untrained": str(recipe),
        "train_labels": str(synth_corpus / "fine.csv"),
        "eval": {"batch_size": 4, "max_new_tokens": 6, "bootstrap": 50, "limit": 6},
        "tracking": {"enabled": True, "uri": uri, "experiment": "eval-test"},
        "tags": {"cell": "tiny/trained", "backbone": "tiny", "init": "trained"},
        "baseline_tags": {"untrained": {"cell": "tiny/untrained", "backbone": "tiny", "init": "untrained"},
                          "most_frequent": {"cell": "baseline/most-frequent", "backbone": "-",
                                            "init": "most-frequent"}},
    }), encoding="utf-8")
    assert main(["eval", "--config", str(config), "eval.bootstrap=20"]) == 0

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("eval-test").experiment_id])
    by_cell = {r.data.tags["cell"]: r for r in runs}
    assert sorted(by_cell) == ["baseline/most-frequent", "tiny/trained", "tiny/untrained"]
    assert all(r.info.status == "FINISHED" and r.data.tags["kind"] == "eval" for r in runs)
    model_run = by_cell["tiny/trained"]
    assert model_run.info.run_name == "tiny/trained"
    assert {eval_key(k) for k, _ in HEADLINE} <= set(model_run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(model_run.info.run_id)}
    assert {"metrics.json", "predictions.csv"} <= artifacts
    assert by_cell["tiny/untrained"].data.tags["baseline"] == "untrained"
    # Every system's run names the split it was scored on (the UI's Dataset column), with its content digest.
    index = read_index(str(test_shards))
    for run in runs:
        (test_input,) = run.inputs.dataset_inputs
        assert (test_input.dataset.name, test_input.dataset.digest) == (index.split, index.digest[:16])
        assert [(t.key, t.value) for t in test_input.tags] == [("mlflow.data.context", "test")]
        assert json.loads(test_input.dataset.profile)["num_rows"] == index.samples

    rows = collect(uri, "eval-test")
    assert {(r.backbone, r.init) for r in rows} == {("tiny", "trained"), ("tiny", "untrained"),
                                                    ("-", "most-frequent")}


def test_eval_without_tracking_logs_nothing(tmp_path, caplog):
    """Tracking is off by default: a settings error is reported before anything runs, and no store appears."""
    assert main(["eval", "--shards", "s", "--out", str(tmp_path / "o")]) == 2
    assert "missing setting(s) model" in caplog.text
    assert not (tmp_path / "o").exists()
