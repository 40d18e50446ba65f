"""Fast checks of the training building blocks: config, DeepSpeed config filling, schedule, checkpoint files."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from affectgpt.config import ConfigError, load_config
from affectgpt.run_metrics import TRAIN_LOSS
from affectgpt.train import checkpoint as ck
from affectgpt.train import rng
from affectgpt.train.config import TrainConfig
from affectgpt.train.ds_config import fill, load_template, template_path
from affectgpt.train.flops import matmul_peak_flops
from affectgpt.train.schedule import WarmupCosine, lr_factor

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def cfg(*overrides):
    return load_config(TrainConfig, ROOT / "configs" / "stage1.yaml", list(overrides))


def test_stage_configs_load_and_unknown_keys_are_rejected():
    assert cfg().dist.strategy == "zero3"
    assert load_config(TrainConfig, ROOT / "configs" / "stage2.yaml").init.from_model is not None
    with pytest.raises(ConfigError, match="optim.lrr"):
        cfg("optim.lrr=1")


def test_feature_keys_are_accepted():
    c = cfg("data.packed=true", "model.activation_checkpointing=true",
            "model.activation_checkpointing_every_n_layers=2", "finetune=lora", "lora.r=8",
            "lora.target_modules=[q_proj,v_proj]", "dist.precision=bf16", "data.max_tokens_per_batch=512")
    assert c.data.packed is True and c.model.activation_checkpointing_every_n_layers == 2
    assert c.data.max_tokens_per_batch == 512 and cfg().data.max_tokens_per_batch is None
    assert c.lora_config().r == 8 and c.lora_config().target_modules == ["q_proj", "v_proj"]
    assert cfg().data.packed is None and cfg().lora_config() is None  # auto packing; full fine-tuning
    assert cfg("finetune=lora").lora_config().r == 16  # the defaults of LoraConfig


@pytest.mark.parametrize(("overrides", "message"), [
    (["lora.r=8"], "lora.* is set but finetune=full"),
    (["model.activation_checkpointing_every_n_layers=2"], "model.activation_checkpointing is false"),
    (["finetune=lora", "lora.r=0"], "lora.r must be >= 1"),
    (["finetune=lora", "lora.target_modules=[]"], "lora.target_modules is empty"),
    (["finetune=partial"], "finetune"),
    (["data.packed=false", "data.max_tokens_per_batch=256"], "max_tokens_per_batch cuts packed .* data.packed=false"),
    (["data.max_tokens_per_batch=0"], "data.max_tokens_per_batch must be >= 1"),
])
def test_contradictory_feature_keys_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        cfg(*overrides)


def test_lora_on_a_random_llm_is_refused(tiny_recipe):
    from affectgpt.train.components import AffectGPTJob

    c = cfg(f"model.recipe={tiny_recipe}", "finetune=lora", "model.set.llm_init=random")
    with pytest.raises(ValueError, match="finetune=lora .* llm_init=random"):
        AffectGPTJob(c)


def test_a_token_budget_turns_auto_packing_on(tiny_recipe):
    from affectgpt.train.components import AffectGPTJob

    assert not AffectGPTJob(cfg(f"model.recipe={tiny_recipe}")).packed  # auto on CPU: SDPA, padded
    assert AffectGPTJob(cfg(f"model.recipe={tiny_recipe}", "data.max_tokens_per_batch=256")).packed


def test_token_counts_follow_the_shifted_labels():
    from affectgpt.train.session import input_tokens, target_tokens

    padded = {"input_ids": torch.zeros(2, 5, dtype=torch.long),
              "attention_mask": torch.tensor([[1] * 5, [1, 1, 1, 0, 0]]),
              "labels": torch.tensor([[7, -100, 3, 4, 5], [-100, 6, 6, -100, -100]])}
    assert target_tokens(padded) == 5 and input_tokens(padded) == 8  # the first label of a row predicts nothing
    packed = {"input_ids": torch.zeros(1, 8, dtype=torch.long),
              "labels": torch.tensor([[-100, -100, 3, 4, -100, 6, 6, 6]])}
    assert target_tokens(packed) == 5 and input_tokens(packed) == 8


@pytest.mark.parametrize("world", [1, 2, 4])
def test_global_batch_is_constant_across_world_sizes(world):
    c = cfg("global_batch_size=16", "micro_batch_size=2")
    filled = fill(load_template(template_path(c)), c, world_size=world, bf16=False, hidden_size=64)
    assert filled["train_batch_size"] == 16
    assert filled["train_micro_batch_size_per_gpu"] * world * filled["gradient_accumulation_steps"] == 16


def test_indivisible_global_batch_names_the_values_that_fit():
    c = cfg("global_batch_size=12", "micro_batch_size=4")
    with pytest.raises(ValueError, match=r"micro_batch_size values that fit: \[1, 2, 3, 6\]"):
        c.accumulation_steps(2)


@pytest.mark.parametrize("strategy,stage", [("zero3", 3), ("zero2", 2), ("ddp", 0)])
def test_templates_have_no_auto_left(strategy, stage):
    c = cfg(f"dist.strategy={strategy}", "optim.grad_clip=0.5")
    filled = fill(load_template(template_path(c)), c, world_size=2, bf16=True, hidden_size=64)
    assert "auto" not in json.dumps(filled)
    assert filled["zero_optimization"]["stage"] == stage
    assert filled["gradient_clipping"] == 0.5 and filled["bf16"]["enabled"] is True


def test_unfillable_auto_is_an_error(tmp_path):
    c = cfg()
    with pytest.raises(ValueError, match=r"no rule fills \"auto\" at optimizer.lr"):
        fill({"optimizer": {"lr": "auto"}}, c, world_size=1, bf16=False, hidden_size=8, source="x.json")


def test_warmup_then_cosine_to_the_floor():
    factors = [lr_factor(s, 10, 110, 0.1) for s in range(110)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert lr_factor(500, 10, 110, 0.1) == pytest.approx(0.1)


@pytest.mark.parametrize(("enough_s", "side"), [(0.0, 256), (float("inf"), 512)])
def test_peak_probe_stops_growing_once_a_product_is_slow_enough(enough_s, side, caplog):
    """bf16 on a CPU without a fast path ran at 0.14 GFLOP/s on a CI machine: at the fixed side 2048 the probe
    alone held training's start-up for four minutes. The side now grows only while a product is quick."""
    caplog.set_level("DEBUG", logger="affectgpt.train.flops")
    assert matmul_peak_flops("cpu", torch.bfloat16, size=512, min_seconds=0.01, enough_s=enough_s) > 0
    assert f"side {side})" in caplog.text


def test_scheduler_state_round_trips():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosine(opt, 3, 20, 0.0)
    for _ in range(7):
        opt.step()
        sched.step()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = WarmupCosine(opt2, 3, 20, 0.0)
    sched2.load_state_dict(json.loads(json.dumps(sched.state_dict())))
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    # The schedule's shape comes from the config, not the checkpoint: a longer run follows its new schedule.
    longer = WarmupCosine(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 3, 40, 0.0)
    longer.load_state_dict(sched.state_dict())
    assert longer.max_steps == 40 and longer.last_epoch == sched.last_epoch


def test_rng_capture_restore_is_exact_and_json_safe():
    state = json.loads(json.dumps(rng.capture()))
    first = (random.random(), np.random.rand(), torch.rand(3))
    rng.restore(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def fake_checkpoint(root, step, world=2, seal=True):
    tag = root / ck.tag_for(step)
    (tag / "shard.pt").parent.mkdir(parents=True, exist_ok=True)
    (tag / "shard.pt").write_bytes(b"x" * step)
    for r in range(world):
        ck.write_trainer_state(tag, r, {"step": step})
    if seal:
        ck.write_manifest(tag, {"step": step, "world_size": world, "strategy": "zero3"})
        ck.atomic_write_text(root / ck.LATEST, tag.name)
    return tag


def test_latest_complete_checkpoint_is_chosen(tmp_path):
    fake_checkpoint(tmp_path, 10)
    fake_checkpoint(tmp_path, 20)
    fake_checkpoint(tmp_path, 30, seal=False)  # a save that never finished
    info = ck.find_resumable(tmp_path)
    assert info.step == 20 and info.world_size == 2


def test_missing_file_is_named_and_previous_checkpoint_used(tmp_path, caplog):
    fake_checkpoint(tmp_path, 10)
    (fake_checkpoint(tmp_path, 20) / "shard.pt").unlink()
    assert ck.find_resumable(tmp_path).step == 10
    assert "file shard.pt listed in manifest.json is missing" in caplog.text


def test_truncated_file_is_rejected(tmp_path):
    tag = fake_checkpoint(tmp_path, 10)
    (tag / "shard.pt").write_bytes(b"x")
    with pytest.raises(ck.CheckpointError, match="shard.pt has 1 bytes, manifest.json says 10"):
        ck.validate(tag)


def test_flipped_bit_is_named_and_previous_checkpoint_used(tmp_path, caplog):
    fake_checkpoint(tmp_path, 10)
    shard = fake_checkpoint(tmp_path, 20) / "shard.pt"
    data = bytearray(shard.read_bytes())
    data[7] ^= 0x10  # same size: only the digest can tell
    shard.write_bytes(bytes(data))
    assert ck.find_resumable(tmp_path).step == 10
    assert "file shard.pt has xxh3-128" in caplog.text and "(altered on disk)" in caplog.text


def test_export_checks_digests_before_reading(tmp_path):
    from affectgpt.train.export import resolve

    tag = fake_checkpoint(tmp_path, 10)
    (tag / "shard.pt").write_bytes(b"y" * 10)
    with pytest.raises(ck.CheckpointError, match="shard.pt has xxh3-128"):
        resolve(tag)  # a step dir is used as given: refused, never unpickled


def test_size_only_manifest_of_schema_1_is_still_read(tmp_path, caplog):
    tag = fake_checkpoint(tmp_path, 10)
    manifest = json.loads((tag / ck.MANIFEST).read_text())
    manifest.update(schema=1, files={rel: entry["bytes"] for rel, entry in manifest["files"].items()})
    (tag / ck.MANIFEST).write_text(json.dumps(manifest))
    assert ck.validate(tag).step == 10
    assert "predates checkpoint digests" in caplog.text


def test_no_usable_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    (fake_checkpoint(tmp_path, 10) / ck.TRAINER_DIR / "rank_00001.json").unlink()
    with pytest.raises(ck.CheckpointError, match="no usable checkpoint"):
        ck.find_resumable(tmp_path)
    assert ck.find_resumable(tmp_path / "empty") is None


def test_prune_keeps_last_k_and_removes_stale_partials(tmp_path):
    fake_checkpoint(tmp_path, 5, seal=False)
    for step in (10, 20, 30, 40):
        fake_checkpoint(tmp_path, step)
    ck.prune(tmp_path, keep_last=2)
    assert [p.name for p in ck.tags(tmp_path)] == ["step_00000040", "step_00000030"]


def test_prune_keeps_the_best_checkpoint(tmp_path):
    for step in (10, 20, 30):
        fake_checkpoint(tmp_path, step)
    (tmp_path / ck.BEST).write_text("step_00000010\n")
    ck.prune(tmp_path, keep_last=1)
    assert [p.name for p in ck.tags(tmp_path)] == ["step_00000030", "step_00000010"]
    assert ck.read_pointer(tmp_path, ck.BEST) == tmp_path / "step_00000010"


def test_universal_command_is_exact(tmp_path):
    info = ck.validate(fake_checkpoint(tmp_path, 10))
    cmd = ck.universal_command(info)
    assert cmd.startswith(f"python -m deepspeed.checkpoint.ds_to_universal --input_folder {info.path} ")
    assert cmd.endswith(f"mv {info.path}_universal.partial {info.path}_universal")


def test_failed_checkpoint_write_names_the_file_and_free_space_and_keeps_latest(tmp_path):
    fake_checkpoint(tmp_path, 10)

    class FullDisk:
        def save_checkpoint(self, root, tag, save_latest):
            (tmp_path / tag).mkdir(parents=True, exist_ok=True)
            (tmp_path / tag / "optim_states.pt").write_bytes(b"x" * 3)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . basic_ios::clear: iostream error")

    manager = ck.CheckpointManager(tmp_path, keep_last=3, rank=0, world_size=1, barrier=lambda: None)
    with pytest.raises(ck.CheckpointError) as err:
        manager.save(FullDisk(), 20, {"step": 20}, {"strategy": "zero3"})
    assert str(err.value).startswith(f"writing checkpoint {tmp_path / 'step_00000020'} failed: [enforce fail")
    assert f"newest file in it: {tmp_path / 'step_00000020' / 'optim_states.pt'} (3 bytes); " in str(err.value)
    assert " GiB free of " in str(err.value) and str(err.value).endswith("latest still names step_00000010")
    assert ck.find_resumable(tmp_path).step == 10


def test_second_holder_of_a_checkpoint_dir_is_refused_by_name(tmp_path):
    import socket
    import subprocess
    import sys

    from affectgpt.train.lock import CheckpointDirLock, DirLockedError, holder

    hold = ("import sys, time; from pathlib import Path; from affectgpt.train.lock import CheckpointDirLock; "
            "CheckpointDirLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(60)")
    other = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert other.stdout.readline().strip() == "held"
        assert holder(tmp_path)["pid"] == other.pid
        with pytest.raises(DirLockedError, match=f"in use by another training job \\(host {socket.gethostname()}, "
                                                 f"PID {other.pid}, since "):
            CheckpointDirLock(tmp_path).acquire()
    finally:
        other.kill()
        other.wait()
    assert holder(tmp_path) is None  # the kernel dropped the dead holder's lock
    lock = CheckpointDirLock(tmp_path)
    lock.acquire()
    lock.release()


def test_tracking_hook_reopens_the_same_mlflow_run(tiny_recipe, train_shards, tmp_path, monkeypatch):
    from affectgpt.train.components import AffectGPTJob

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # what the hook sets; undone after the test

    c = cfg(f"model.recipe={tiny_recipe}", f"checkpoint.dir={tmp_path / 'ckpt'}", "tracking.enabled=true",
            f"data.shards={train_shards['coarse']}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "tags.stage=1")
    job = AffectGPTJob(c)
    first = job.metrics(None, {"world_size": 2})
    first.log(1, {TRAIN_LOSS: 2.0})
    first.close("KILLED")
    again = job.metrics(first.run_id, {"world_size": 2})
    assert again.run_id == first.run_id
    # per metric: step 1's loss was logged, its evaluation (killed before it) was not
    again.log(1, {TRAIN_LOSS: 9.0, "eval/avg": 0.5})
    again.log(2, {TRAIN_LOSS: 1.5})
    again.set_tags({"best_step": 1})  # what evaluation during training records
    again.close()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [(m.step, m.value) for m in client.get_metric_history(first.run_id, TRAIN_LOSS)] == [(1, 2.0), (2, 1.5)]
    assert [(m.step, m.value) for m in client.get_metric_history(first.run_id, "eval/avg")] == [(1, 0.5)]
    assert client.get_run(first.run_id).data.tags["best_step"] == "1"
    assert len(client.get_run(first.run_id).inputs.dataset_inputs) == 1  # the train split, not again on reopen
    assert AffectGPTJob(cfg(f"model.recipe={tiny_recipe}")).metrics(None, {}) is None


def test_resume_decision(tmp_path):
    from affectgpt.train.session import _resume_decision

    root = tmp_path / "ckpt"
    fake_checkpoint(root, 10, world=2)
    with pytest.raises(ck.CheckpointError, match="already holds checkpoints and checkpoint.resume=never"):
        _resume_decision(cfg(f"checkpoint.dir={root}", "checkpoint.resume=never"), 2)
    info, universal = _resume_decision(cfg(f"checkpoint.dir={root}"), 2)
    assert info.step == 10 and not universal
    with pytest.raises(ck.CheckpointError, match="(?s)this job has 2 ranks with zero2.*ds_to_universal"):
        _resume_decision(cfg(f"checkpoint.dir={root}", "dist.strategy=zero2"), 2)
    (root / "step_00000010_universal").mkdir()
    assert _resume_decision(cfg(f"checkpoint.dir={root}"), 4)[1] is True
    assert _resume_decision(cfg(f"checkpoint.dir={tmp_path / 'fresh'}"), 2) == (None, False)


@pytest.mark.parametrize("on", [False, True])
def test_activation_checkpointing_is_a_training_key(tiny_recipe, on):
    from affectgpt.train.components import AffectGPTJob
    from affectgpt.train.ds_config import fill, load_template, template_path

    c = cfg(f"model.recipe={tiny_recipe}", "dist.strategy=ddp", f"model.activation_checkpointing={str(on).lower()}")
    job = AffectGPTJob(c)
    ds_config = fill(load_template(template_path(c)), c, world_size=1, bf16=False, hidden_size=job.hidden_size)
    assert job.build_model(ds_config).llm.is_activation_checkpointing is on


def test_gather_per_block_marks_the_blocks_of_the_llm_and_the_encoders_and_nothing_inside_them(tiny_recipe):
    from deepspeed.utils import z3_leaf_module

    from affectgpt.train.components import AffectGPTJob
    from affectgpt.train.gather import gather_per_block, largest_gather

    c = cfg(f"model.recipe={tiny_recipe}", "dist.strategy=ddp")
    job = AffectGPTJob(c)
    model = job.build_model(fill(load_template(template_path(c)), c, world_size=1, bf16=False,
                                 hidden_size=job.hidden_size))
    assert cfg().dist.gather == "block"
    marked = gather_per_block(model)
    layers = model.llm.config.get_text_config().num_hidden_layers
    decoder = type(model.llm.get_decoder().layers[0]).__name__
    assert marked[decoder] == layers
    assert sum(marked.values()) > layers  # the encoders' layers too
    leaves = [name for name, m in model.named_modules() if z3_leaf_module(m)]
    assert all(not a.startswith(b + ".") for a in leaves for b in leaves), "a block nested in a marked block"
    assert not z3_leaf_module(model) and not z3_leaf_module(model.llm)  # generate() calls no block's parent
    # the planner's ZeRO-3 live parameters: a whole block, more than any one module in it
    layer = model.llm.get_decoder().layers[0]
    whole = sum(p.numel() for p in layer.parameters())
    assert largest_gather(model) >= whole > max(sum(p.numel() for p in m.parameters(recurse=False))
                                                for m in layer.modules())

@pytest.mark.parametrize("env, want", [({"LOCAL_SIZE": "2"}, "half"), ({"LOCAL_WORLD_SIZE": "1"}, "all"),
                                       ({"LOCAL_SIZE": "2", "OMP_NUM_THREADS": "3"}, "kept")])
def test_cpu_ranks_share_the_cores(monkeypatch, env, want):
    import os

    from affectgpt.train.session import share_cores

    before = torch.get_num_threads()
    for key in ("OMP_NUM_THREADS", "LOCAL_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(3)
    try:
        expected = {"half": max(1, cores // 2), "all": cores, "kept": 3}[want]
        assert share_cores() == expected == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)

def test_a_failed_in_process_export_fails_the_cell_not_the_study(tmp_path, monkeypatch):
    import affectgpt.cli
    from affectgpt.study import ShardPaths, StepFailed, Study, StudyConfig

    recipe = ROOT / "configs" / "models" / "llama-tiny.yaml"
    study = Study(StudyConfig(name="s", out=tmp_path, shards=ShardPaths(tmp_path, tmp_path, tmp_path),
                              backbones=[recipe], baselines=["untrained"]))
    with pytest.raises(StepFailed, match="stage 1 export exited with code 1"):  # the export's own error
        study._in_process("stage 1 export", ["export", str(tmp_path / "no-checkpoints"), "--out", str(tmp_path / "m")])

    def crash(argv):
        raise OSError("disk gone")

    monkeypatch.setattr(affectgpt.cli, "main", crash)
    with pytest.raises(StepFailed, match="stage 2 export exited with code 1"):  # an unexpected one
        study._in_process("stage 2 export", ["export", "x", "--out", "y"])

def test_study_grid_has_a_finetune_axis_without_lora_on_a_random_llm(tmp_path):
    from affectgpt.study import ShardPaths, StudyConfig, cells

    recipe = ROOT / "configs" / "models" / "llama-tiny.yaml"
    study = StudyConfig(name="s", out=tmp_path, shards=ShardPaths(tmp_path, tmp_path, tmp_path), backbones=[recipe],
                        inits=["stage1+stage2", "random-llm+stage1+stage2"], finetunes=["full", "lora"],
                        baselines=["untrained"])
    assert [(cell, init, finetune) for cell, _, init, finetune in cells(study)] == [
        ("llama-tiny/stage1+stage2", "stage1+stage2", "full"),
        ("llama-tiny/stage1+stage2/lora", "stage1+stage2", "lora"),
        ("llama-tiny/random-llm+stage1+stage2", "random-llm+stage1+stage2", "full"),
    ]
    with pytest.raises(ValueError, match="finetunes"):
        StudyConfig(name="s", out=tmp_path, shards=ShardPaths(tmp_path, tmp_path, tmp_path), backbones=[recipe],
                    finetunes=["qlora"], baselines=["untrained"])


def test_lora_freezes_the_llm_but_its_adapters(tiny_recipe):
    from affectgpt.config import load_config
    from affectgpt.model import AffectGPT, AffectGPTConfig
    from affectgpt.model.lora import LoraConfig, add_lora

    model = AffectGPT.from_config(load_config(AffectGPTConfig, tiny_recipe))
    full = sum(p.numel() for p in model.llm.parameters() if p.requires_grad)
    add_lora(model.llm, LoraConfig(r=4))
    trainable = {n for n, p in model.llm.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    projections = {n.split(".")[-4] for n in trainable}  # ...<proj>.lora_A.default.weight
    assert projections == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert sum(p.numel() for n, p in model.llm.named_parameters() if n in trainable) < full / 10
    assert all(p.requires_grad for p in model.video.proj.parameters())  # the adapter modules still train
    with pytest.raises(ValueError, match="lora.target_modules"):
        add_lora(AffectGPT.from_config(load_config(AffectGPTConfig, tiny_recipe)).llm,
                 LoraConfig(target_modules=["no_such_proj"]))
