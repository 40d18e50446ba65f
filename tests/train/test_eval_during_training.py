"""Evaluation during training under the real launcher (2 ZeRO-3 ranks): ``eval/*`` at every ``eval.every``
steps in the training run's own MLflow run, the best step checkpointed and pointed at, a kill -9 and a rerun
that log no step twice and keep the best step, and ``affectgpt export --best``."""

from __future__ import annotations

import json
import signal

import pytest

from affectgpt.run_metrics import TRAIN_LOSS
from shards.index import read_index

from . import ds_launch as launch
from .conftest import pack_split
from .ds_launch import STEPS, stage1_cmd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def val_shards(synth_corpus, tmp_path_factory):
    # the corpus's test split (6 clips) stands in for a validation split here: val.csv has 1 clip at this size
    return pack_split(synth_corpus, "test", tmp_path_factory.mktemp("val") / "val")


def test_eval_every_logs_in_the_training_run_survives_kill9_and_exports_best(
        tiny_recipe, train_shards, val_shards, tmp_path):
    from mlflow import MlflowClient

    from affectgpt.cli import main

    ckpt, db = tmp_path / "ckpt", tmp_path / "mlflow.db"
    cmd = stage1_cmd(tiny_recipe, train_shards, ckpt, f"eval.shards={val_shards}", "eval.every=4", "eval.samples=5",
                     "eval.max_new_tokens=12", "checkpoint.every=100", "checkpoint.keep_last=1",
                     "tracking.enabled=true", f"tracking.uri=sqlite:///{db}")
    proc = launch.start(cmd, tmp_path / "log1.txt")
    # kill -9 once the first evaluation is logged and checkpointed (checkpoint.every=100: only best steps and
    # the last step are checkpointed, so `latest` is the best step until the end)
    launch.wait_for(lambda: (ckpt / "best").exists(), timeout=300, proc=proc)
    launch.kill_tree(proc, signal.SIGKILL)
    assert (ckpt / "latest").read_text().strip() != f"step_{STEPS:08d}", "the run finished before the kill"

    assert launch.run(cmd, tmp_path / "log2.txt", timeout=300) == 0, (tmp_path / "log2.txt").read_text()[-4000:]
    assert "resuming from" in (tmp_path / "log2.txt").read_text()

    records = [json.loads(line) for line in (ckpt / "metrics.jsonl").read_text().splitlines()]
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("affectgpt").experiment_id])
    assert len(runs) == 1, "one MLflow run for the killed and the resumed process"
    run_id = runs[0].info.run_id
    manifest = json.loads((ckpt / (ckpt / "latest").read_text().strip() / "manifest.json").read_text())
    assert manifest["tracking_run_id"] == run_id
    history = {key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
               for key in ("eval/avg", "eval/n", TRAIN_LOSS)}
    eval_steps = sorted(s for s, _ in history["eval/avg"])
    assert eval_steps == [4, 8, 12], history["eval/avg"]  # every eval.every steps and at the end, each once
    loss_steps = [s for s, _ in history[TRAIN_LOSS]]
    assert len(loss_steps) == len(set(loss_steps)) == STEPS // 2
    assert all(v == 5 for _, v in history["eval/n"])

    values = dict(history["eval/avg"])
    best_step = min(s for s in eval_steps if values[s] == max(values.values()))  # earliest of the maxima
    run = client.get_run(run_id)
    assert run.data.tags["best_step"] == str(best_step) and run.data.tags["selection"] == "best-val:avg"
    # the splits it read, as MLflow dataset inputs, logged once although the run was resumed
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert len(run.inputs.dataset_inputs) == 2
    assert {c: (d.name, d.digest) for c, d in inputs.items()} == {
        c: (read_index(str(d)).split, read_index(str(d)).digest[:16])
        for c, d in (("train", train_shards["coarse"]), ("validation", val_shards))}
    assert (ckpt / "best").read_text().strip() == f"step_{best_step:08d}"
    assert (ckpt / f"step_{best_step:08d}" / "manifest.json").is_file(), "keep_last=1 must keep the best step"
    assert any("eval/avg" in r for r in records)

    out = tmp_path / "best-model"
    assert main(["export", str(ckpt), "--best", "--out", str(out)]) == 0
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["step"] == best_step and provenance["selection"] == "best-val:avg"


def test_export_best_without_validation_names_the_problem(tmp_path):
    from affectgpt.cli import main

    (tmp_path / "ckpt").mkdir()
    assert main(["export", str(tmp_path / "ckpt"), "--best", "--out", str(tmp_path / "m")]) == 1
