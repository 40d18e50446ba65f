"""`affectgpt eval` and `affectgpt describe` with a tiny random model on real synthetic clips and shards."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from affectgpt.cli import main
from affectgpt.corpus import read_split
from affectgpt.eval.metrics import METRICS
from affectgpt.packing import pack_split
from shards.loader import ShardLoader
from shards.schema import PackConfig

FRAMES, SIZE, AUDIO_SECONDS = 4, 32, 2.0


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    from affectgpt.config import from_dict, save_config
    from affectgpt.model import AffectGPTConfig
    from affectgpt.model.zoo import build_zoo

    zoo = tmp_path_factory.mktemp("zoo")
    status = build_zoo(zoo, only=["llm/llama-tiny", "video/clip-tiny", "audio/whisper-tiny"])
    assert set(status.values()) == {"built"}, status
    cfg = from_dict(AffectGPTConfig, {
        "llm": str(zoo / "llm" / "llama-tiny"), "num_frames": FRAMES, "frame_size": SIZE,
        "max_audio_seconds": AUDIO_SECONDS,
        "video": {"encoder": str(zoo / "video" / "clip-tiny"), "num_queries": 2},
        "audio": {"encoder": str(zoo / "audio" / "whisper-tiny"), "num_queries": 2},
    })
    save_config(cfg, zoo / "recipe.yaml")
    return zoo / "recipe.yaml"


@pytest.fixture(scope="module")
def model_dir(recipe, tmp_path_factory) -> Path:
    from affectgpt.config import load_config
    from affectgpt.model import AffectGPT, AffectGPTConfig

    out = tmp_path_factory.mktemp("model")
    AffectGPT.from_config(load_config(AffectGPTConfig, recipe)).save_pretrained(out)
    return out


def pack(corpus: Path, split: str, out: Path) -> Path:
    """One split of the corpus packed the way the pack job packs it (without Ray)."""
    cfg = PackConfig(frames=FRAMES, size=SIZE, max_audio_seconds=AUDIO_SECONDS, samples_per_shard=4)
    pack_split(corpus, split, str(out), cfg, progress=False)
    return out


@pytest.fixture(scope="module")
def test_shards(synth_corpus, tmp_path_factory) -> Path:
    return pack(synth_corpus, "test", tmp_path_factory.mktemp("shards"))


@pytest.mark.slow
def test_eval_writes_predictions_and_metrics_that_score_reproduces(model_dir, test_shards, synth_corpus, tmp_path,
                                                                    capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(model_dir), "--shards", str(test_shards), "--out", str(out),
                 "--train-labels", str(synth_corpus / "fine.csv"), "--batch-size", "4", "--max-new-tokens", "6",
                 "--bootstrap", "100"]) == 0
    assert "most_frequent" in capsys.readouterr().out
    with (out / "predictions.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    test_names = {r.name for r in read_split(synth_corpus, "test", require_video=False)}
    assert {r["name"] for r in rows} == test_names and len(rows) == len(test_names)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["samples"] == len(test_names) and metrics["run"]["gt_source"] == "labels"
    assert metrics["model"]["n"] == len(test_names)
    assert metrics["baselines"]["most_frequent"]["labels"]

    # the same predictions scored from the files alone give the same numbers
    score_json = tmp_path / "score.json"
    assert main(["score", "--gt", str(synth_corpus / "test.csv"), "--pred", str(out / "predictions.csv"),
                 "--train", str(synth_corpus / "fine.csv"), "--bootstrap", "100", "--json", str(score_json)]) == 0
    scored = json.loads(score_json.read_text())
    for a, b in ((scored["model"], metrics["model"]),
                 (scored["baselines"]["most_frequent"], metrics["baselines"]["most_frequent"])):
        for level in ("level1", "level2"):
            assert {k: a[level][k] for k in METRICS} == pytest.approx({k: b[level][k] for k in METRICS})
            assert a[level]["ci95"] == b[level]["ci95"]


@pytest.mark.slow
def test_eval_limit_and_untrained_baseline(model_dir, test_shards, tmp_path):
    out = tmp_path / "eval"
    # the "untrained" baseline here is the same (untrained) model: greedy decoding must reproduce it exactly
    assert main(["eval", "--model", str(model_dir), "--shards", str(test_shards), "--out", str(out),
                 "--untrained", str(model_dir), "--limit", "3", "--batch-size", "2", "--max-new-tokens", "4",
                 "--bootstrap", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["samples"] == 3
    assert metrics["baselines"]["untrained"]["n"] == 3
    assert metrics["baselines"]["untrained"]["level1"] == metrics["model"]["level1"]
    assert (out / "untrained" / "predictions.csv").read_text() == (out / "predictions.csv").read_text()


def test_the_untrained_baseline_is_initialised_from_the_seed(recipe):
    from affectgpt.commands.eval import _load

    def adapters(seed):
        return _load(recipe, seed).adapter_state_dict()

    first, again, other = adapters(0), adapters(0), adapters(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.slow
def test_describe_decodes_a_clip_exactly_as_the_shards_store_it(model_dir, test_shards, synth_corpus, capsys):
    from affectgpt.model import AffectGPTConfig
    from affectgpt.packing import clip_sample

    stored = next(iter(ShardLoader(str(test_shards), 1, resampled=False)))[0]
    cfg = AffectGPTConfig(llm=model_dir / "llm", num_frames=FRAMES, frame_size=SIZE, max_audio_seconds=AUDIO_SECONDS)
    video = synth_corpus / "videos" / f"{stored['name']}.mp4"
    fresh = clip_sample(video, cfg, stored["subtitle"])
    assert np.array_equal(fresh["frames"], stored["frames"])
    assert np.array_equal(fresh["audio"], stored["audio"]) and fresh["has_audio"] == stored["has_audio"]
    assert fresh["subtitle"] == stored["subtitle"]

    assert main(["describe", str(video), "--model", str(model_dir), "--subtitle", stored["subtitle"],
                 "--max-new-tokens", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert set(json.loads(lines[-1])) == {"labels", "groups"}


def test_describe_reports_a_bad_clip(model_dir, tmp_path, caplog):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert main(["describe", str(empty), "--model", str(model_dir)]) == 2
    assert "empty.mp4: file is empty" in caplog.text


@pytest.mark.slow
def test_bench_scores_every_task_of_a_suite_and_logs_one_run_per_model(model_dir, test_shards, synth_corpus,
                                                                         tmp_path, capsys):
    from mlflow import MlflowClient

    root = tmp_path / "shards"
    root.mkdir()
    (root / "test").symlink_to(test_shards)
    for split in ("test_discrete", "test_sentiment"):
        pack(synth_corpus, split, root / split)
    suite = yaml.safe_load((Path(__file__).parents[2] / "configs" / "bench" / "synth.yaml").read_text())
    suite.update(root=str(root), batch_size=3, max_new_tokens=4, bootstrap=0,
                 wheels=["default", str(Path(__file__).parents[2] / "configs" / "wheels" / "ekman.tsv")])
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    out, db = tmp_path / "bench", tmp_path / "mlflow.db"
    assert main(["bench", "--model", str(model_dir), "--suite", str(tmp_path / "suite.yaml"), "--out", str(out),
                 "--tracking-uri", f"sqlite:///{db}"]) == 0
    table = capsys.readouterr().out
    summary = json.loads((out / "bench.json").read_text())
    tasks = {s["corpus"]: (s["task"], s["metric"]) for s in summary["scores"]}
    assert tasks == {"synth-ov": ("open_vocabulary", "level2/avg"), "synth-discrete": ("discrete", "hit_rate"),
                     "synth-sentiment": ("sentiment", "weighted_f1")}
    values = [s["value"] for s in summary["scores"]]
    assert summary["mean"][model_dir.name] == pytest.approx(sum(values) / 3)
    assert "**mean**" in table and (out / "bench.md").read_text().strip() == table.strip()
    discrete = json.loads((out / model_dir.name / "synth" / "synth-discrete" / "metrics.json").read_text())
    assert discrete["model"]["task"] == "discrete" and discrete["model"]["n"] == 6
    assert set(discrete["model"]["wheels"]) == {"default", "ekman"}  # scored on both wheels, then averaged
    sentiment = json.loads((out / model_dir.name / "synth" / "synth-sentiment" / "metrics.json").read_text())
    assert sentiment["model"]["n_scored"] + sentiment["model"]["neutral_gt"] == 6

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["kind"] == "bench"
    assert runs[0].data.metrics["bench/mean"] == pytest.approx(summary["mean"][model_dir.name])
    discrete_score = next(s["value"] for s in summary["scores"] if s["corpus"] == "synth-discrete")
    assert runs[0].data.metrics["bench/synth-discrete/hit_rate"] == pytest.approx(discrete_score)


def test_bench_names_a_missing_corpus(model_dir, tmp_path, caplog):
    suite = {"name": "s", "corpora": [{"name": "c", "task": "discrete", "shards": str(tmp_path / "nowhere")}]}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    assert main(["bench", "--model", str(model_dir), "--suite", str(tmp_path / "suite.yaml"),
                 "--out", str(tmp_path / "o"), "--no-tracking"]) == 2
    assert "nowhere" in caplog.text
    suite["corpora"][0]["task"] = "ranking"
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    assert main(["bench", "--model", str(model_dir), "--suite", str(tmp_path / "suite.yaml"),
                 "--out", str(tmp_path / "o"), "--no-tracking"]) == 2
    assert "task must be one of" in caplog.text


def test_describe_refuses_a_file_that_is_not_a_video_container(model_dir, tmp_path, caplog):
    text = tmp_path / "README.txt"
    text.write_text("An AffectGPT model watches a video clip.\n" * 20)  # FFmpeg's tty demuxer would render it
    assert main(["describe", str(text), "--model", str(model_dir)]) == 2
    assert "README.txt: not a video container: FFmpeg reads it as Tele-typewriter (tty)" in caplog.text
