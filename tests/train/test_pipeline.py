"""The pipeline under the real launcher: AffectGPT (qwen2-tiny, tied embeddings) on synthetic shards with 2
ZeRO-3 ranks. Stage 1 learns, a killed run resumes bit-identically, export round-trips, Stage 2 starts from the
Stage 1 export, and two launcher invocations acting as two nodes form one job."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
import torch

from affectgpt.net import free_port
from affectgpt.run_metrics import TRAIN_LOSS

from . import ds_launch as launch
from .ds_launch import ROOT, STEPS, TRAIN, consolidated, overrides, stage1_cmd

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def exported(stage1, tmp_path_factory):
    from affectgpt.cli import main

    out = tmp_path_factory.mktemp("export") / "stage1"
    assert main(["export", str(stage1), "--out", str(out)]) == 0
    return out


def test_stage1_loss_falls(stage1):
    records = [json.loads(line) for line in (stage1 / "metrics.jsonl").read_text().splitlines()]
    losses = [r[TRAIN_LOSS] for r in records if TRAIN_LOSS in r]
    assert len(losses) == STEPS // 2
    assert losses[-1] < 0.9 * losses[0], losses


def test_kill9_then_rerun_gives_identical_weights(stage1, tiny_recipe, train_shards, tmp_path):
    ckpt = tmp_path / "ckpt"
    launch.kill9_and_resume(stage1_cmd(tiny_recipe, train_shards, ckpt), ckpt, tmp_path)
    want, got = consolidated(stage1), consolidated(ckpt)
    assert want.keys() == got.keys()
    different = [name for name in want if not torch.equal(want[name], got[name])]
    assert not different, different[:5]


def test_export_round_trip_keeps_weights_and_ties(stage1, exported):
    from affectgpt.model import AffectGPT

    model = AffectGPT.from_pretrained(exported)
    want, got = consolidated(stage1), model.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert model.llm.config.tie_word_embeddings
    assert model.llm.lm_head.weight.data_ptr() == model.llm.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize("adapter", ["checkpoint", "fresh"])
def test_stage2_initialises_from_the_stage1_export(exported, adapter):
    from affectgpt.config import load_config
    from affectgpt.model import AffectGPT
    from affectgpt.train.components import AffectGPTJob
    from affectgpt.train.config import TrainConfig
    from affectgpt.train.ds_config import fill, load_template, template_path

    cfg = load_config(TrainConfig, ROOT / "configs" / "stage2.yaml",
                      [f"init.from_model={exported}", f"init.adapter={adapter}", "dist.strategy=ddp"])
    job = AffectGPTJob(cfg)
    ds_config = fill(load_template(template_path(cfg)), cfg, world_size=1, bf16=False, hidden_size=job.hidden_size)
    built, reference = job.build_model(ds_config).state_dict(), AffectGPT.from_pretrained(exported).state_dict()
    adapter_keys = set(AffectGPT.from_pretrained(exported).adapter_state_dict())
    same = {k for k in reference if torch.equal(built[k], reference[k])}
    assert set(reference) - adapter_keys <= same  # LLM and encoders always come from the export
    assert (adapter_keys <= same) == (adapter == "checkpoint")


def test_stage2_runs_from_the_export(exported, tiny_recipe, train_shards, tmp_path):
    ckpt = tmp_path / "ckpt"
    cmd = launch.deepspeed_cmd(TRAIN, ROOT / "configs" / "stage2.yaml",
                               *overrides(tiny_recipe, train_shards["fine"], ckpt, f"init.from_model={exported}",
                                          "max_steps=1", "checkpoint.every=1"))
    assert launch.run(cmd, tmp_path / "log.txt", timeout=300) == 0, (tmp_path / "log.txt").read_text()[-4000:]
    manifest = json.loads((ckpt / "step_00000001" / "manifest.json").read_text())
    assert manifest["model_config"]["llm"] == str(exported / "llm")


def test_two_node_simulation(tiny_recipe, train_shards, tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node0 slots=1\nnode1 slots=1\n")
    port, ckpt = free_port(), tmp_path / "ckpt"
    procs = []
    for node in (0, 1):
        cmd = launch.deepspeed_cmd(
            TRAIN, ROOT / "configs" / "stage1.yaml",
            *overrides(tiny_recipe, train_shards["coarse"], ckpt, "max_steps=1", "checkpoint.every=1"),
            ranks=1, port=port,
            launcher_args=("--hostfile", str(hostfile), "--num_nodes", "2", "--no_ssh", "--node_rank", str(node),
                           "--master_addr", "127.0.0.1"),
        )
        procs.append(launch.start(cmd, tmp_path / f"node{node}.txt"))
    try:
        codes = [p.wait(timeout=300) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            launch.kill_tree(p, signal.SIGKILL)
        raise
    assert codes == [0, 0], (tmp_path / "node0.txt").read_text()[-3000:] + (tmp_path / "node1.txt").read_text()[-3000:]
    manifest = json.loads((ckpt / "step_00000001" / "manifest.json").read_text())
    assert manifest["world_size"] == 2
