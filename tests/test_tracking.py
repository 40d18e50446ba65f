import pytest
from mlflow import MlflowClient

from affectgpt.tracking import Tracker, TrackingConfig


def exercise(cfg: TrackingConfig, tmp_path):
    """Start a run, log 5 steps, 'crash', reopen it and replay steps 3.. as a resumed run would."""
    first = Tracker.open(cfg, tmp_path, "stage1", params={"model.llm": "tiny", "long": "x" * 900}, tags={"stage": "1"})
    for step in range(5):
        first.log_metrics({"train/loss": 10.0 - step, "train/lr": 1e-3}, step)
    first.close("KILLED")
    resumed = Tracker.open(cfg, tmp_path, "stage1", run_id=first.run_id)
    for step in range(3, 8):
        resumed.log_metrics({"train/loss": 10.0 - step}, step)
    art = tmp_path / "metrics.json"
    art.write_text('{"accuracy_s": 0.5}')
    resumed.log_artifact(art)
    resumed.close()
    return first.run_id


def check(uri: str, run_id: str):
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.llm"] == "tiny"
    assert len(run.data.params["long"]) == 500
    assert run.data.tags["stage"] == "1" and run.data.tags["git_commit"]
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(8)), "a resumed step was logged twice or lost"
    assert [a.path for a in client.list_artifacts(run_id)] == ["metrics.json"]
    runs = client.search_runs([client.get_experiment_by_name("affectgpt").experiment_id])
    assert len(runs) == 1


def test_sqlite_store_is_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_id = exercise(TrackingConfig(), tmp_path)
    assert (tmp_path / "mlflow.db").is_file()
    assert (tmp_path / "mlartifacts").is_dir()
    check(f"sqlite:///{tmp_path / 'mlflow.db'}", run_id)


@pytest.mark.integration
def test_real_mlflow_server(mlflow_server, tmp_path):
    run_id = exercise(TrackingConfig(uri=mlflow_server), tmp_path)
    check(mlflow_server, run_id)
