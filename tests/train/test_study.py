"""A whole study through the real deepspeed launcher and a real `mlflow server`: two cells of one backbone and
both baselines, then the same command again, which must skip every finished cell."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from affectgpt.compare import collect
from affectgpt.eval.generate import EvalConfig
from affectgpt.run_metrics import TRAIN_LOSS
from affectgpt.study import LaunchSection, SelectSection, ShardPaths, Study, StudyConfig
from affectgpt.tracking import TrackingConfig

from .conftest import pack_split

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def study_cfg(tiny_recipe, train_shards, synth_corpus, tmp_path_factory, monkeypatch_module, mlflow_server):
    root = tmp_path_factory.mktemp("study")
    monkeypatch_module.setenv("OMP_NUM_THREADS", "1")
    monkeypatch_module.delenv("MLFLOW_TRACKING_URI", raising=False)
    test = pack_split(synth_corpus, "test", root / "shards-test")
    val = pack_split(synth_corpus, "val", root / "shards-val")  # one clip: rank 1 generates a padding repeat
    quick = ["max_steps=4", "checkpoint.every=2", "global_batch_size=4", "micro_batch_size=2", "data.workers=0",
             "log_every=1"]
    return StudyConfig(
        name="study-test", out=root / "out",
        shards=ShardPaths(coarse=train_shards["coarse"], fine=train_shards["fine"], test=test, val=val),
        select=SelectSection(rule="best-val", every=2), eval=EvalConfig(max_new_tokens=24),
        backbones=[tiny_recipe], inits=["stage1+stage2", "stage2-only"],
        train_labels=synth_corpus / "fine.csv",
        stage1_overrides=quick, stage2_overrides=quick, launch=LaunchSection(nproc=2),
        tracking=TrackingConfig(uri=mlflow_server),
    )


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_study_runs_cells_once_and_compare_reads_them(study_cfg):
    study = Study(study_cfg)
    backbone = study_cfg.backbones[0].stem
    cells = [f"{backbone}/stage1+stage2", f"{backbone}/stage2-only"]
    assert study.run() == {cell: "done" for cell in cells}
    assert study.uri.startswith("http://127.0.0.1:")

    client = MlflowClient(tracking_uri=study.uri)
    exp = client.get_experiment_by_name("study-test")
    runs = client.search_runs([exp.experiment_id])
    kinds = sorted((r.data.tags["kind"], r.data.tags["cell"], r.data.tags.get("stage", "")) for r in runs)
    assert kinds == sorted([
        ("train", cells[0], "1"), ("train", cells[0], "2"), ("train", cells[1], "2"),
        ("eval", cells[0], ""), ("eval", cells[1], ""),
        ("eval", f"{backbone}/untrained", ""), ("eval", "baseline/most-frequent", ""),
    ])
    assert all(r.info.status == "FINISHED" for r in runs)
    stage1 = next(r for r in runs if r.data.tags.get("stage") == "1")
    stage2 = next(r for r in runs if r.data.tags.get("stage") == "2" and r.data.tags["cell"] == cells[0])
    assert stage2.data.tags["parent_run_id"] == stage1.info.run_id  # Stage 2 records the Stage 1 run it came from
    only_stage2 = next(r for r in runs if r.data.tags["cell"] == cells[1] and r.data.tags["kind"] == "train")
    assert "parent_run_id" not in only_stage2.data.tags
    steps = [m.step for m in client.get_metric_history(stage1.info.run_id, TRAIN_LOSS)]
    assert steps == sorted(set(steps)) and len(steps) == 4  # one value per step, logged by rank 0 only
    # Stage 2 validated every 2 steps in its own run; the cell's test evaluation names the step it exported
    assert [m.step for m in client.get_metric_history(stage2.info.run_id, "eval/avg")] == [2, 4]
    assert "eval/avg" not in client.get_run(stage1.info.run_id).data.metrics  # Stage 1 is not selected
    evals = {r.data.tags["cell"]: r.data.tags for r in runs if r.data.tags["kind"] == "eval"}
    assert evals[cells[0]]["selection"] == "best-val:avg"
    assert evals[cells[0]]["selected_step"] == client.get_run(stage2.info.run_id).data.tags["best_step"]
    assert evals["baseline/most-frequent"]["selection"] == "-"

    # the same command again: everything is finished, nothing is trained or logged twice
    assert study.run() == {cell: "skipped" for cell in cells}
    assert len(client.search_runs([exp.experiment_id])) == len(runs)

    rows = collect(study.uri, "study-test")
    assert {(r.backbone, r.init) for r in rows} == {
        (backbone, "stage1+stage2"), (backbone, "stage2-only"), (backbone, "untrained"), ("-", "most-frequent")}
    trained = next(r for r in rows if r.init == "stage1+stage2")
    assert len(trained.train_runs) == 2 and trained.train_seconds > 0
    assert trained.selection == "best-val:avg" and trained.selected_step in (2, 4)
    assert set(trained.metrics) == {"accuracy_s", "recall_s", "avg", "wheel_f1"}
