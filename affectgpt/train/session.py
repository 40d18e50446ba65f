"""One training run on one rank: DeepSpeed set-up, resume, the step loop, checkpoints, preemption.

The model and the data arrive through two small factories (``affectgpt.train.components`` builds the real
AffectGPT and shard loader), so this module holds only the distributed-training mechanics.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from affectgpt.config import to_dict
from affectgpt.train import rng
from affectgpt.train.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    CheckpointManager,
    find_resumable,
    read_trainer_state,
    tags,
    universal_command,
    validate,
)
from affectgpt.train.config import TrainConfig
from affectgpt.train.ds_config import STRATEGY_STAGE, fill, load_template, template_path
from affectgpt.train.metrics import MetricsLogger
from affectgpt.train.preemption import PreemptionFlag
from affectgpt.train.schedule import WarmupCosine

log = logging.getLogger(__name__)

# 128 + SIGTERM: the run stopped early on request, after writing a checkpoint; rerun the command to continue.
PREEMPTED_EXIT = 143


class ModelFactory(Protocol):
    hidden_size: int  # sizes DeepSpeed's communication buckets

    def build(self) -> torch.nn.Module:
        """Construct the model (inside ``deepspeed.zero.Init`` under ZeRO-3: parameters arrive partitioned)."""

    def initialise(self, model: torch.nn.Module) -> None:
        """Load initial weights into the (possibly partitioned) model; called on every rank."""

    def describe(self) -> dict[str, Any]:
        """The model config as plain data, stored in each checkpoint so ``affectgpt export`` can rebuild it."""


class StatefulBatches(Protocol):
    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


DataFactory = Callable[[torch.nn.Module, int, int], StatefulBatches]
MetricsFactory = Callable[[str | None], MetricsLogger]


def run(cfg: TrainConfig, model_factory: ModelFactory, data_factory: DataFactory,
        metrics_factory: MetricsFactory) -> int:
    import deepspeed
    import deepspeed.comm as dist
    from deepspeed.accelerator import get_accelerator

    _skip_unused_cpu_comm_build(get_accelerator().device_name())
    deepspeed.init_distributed()
    rank, world_size = dist.get_rank(), dist.get_world_size()
    on_gpu = get_accelerator().device_name() != "cpu"
    bf16 = cfg.dist.precision == "bf16" or (
        cfg.dist.precision == "auto" and on_gpu and get_accelerator().is_bf16_supported()
    )
    source = template_path(cfg)
    ds_config = fill(load_template(source), cfg, world_size=world_size, bf16=bf16,
                     hidden_size=model_factory.hidden_size, source=str(source))
    resume, universal = _agree_on_resume(cfg, world_size, rank, dist)
    if universal:
        ds_config["checkpoint"] = {**ds_config.get("checkpoint", {}), "load_universal": True}

    # The same seed on every rank: all ranks must build the same initial model.
    _seed_all(cfg.seed)
    stage = STRATEGY_STAGE[cfg.dist.strategy]
    with deepspeed.zero.Init(config_dict_or_path=ds_config, enabled=stage == 3):
        model = model_factory.build()
    model_factory.initialise(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in model.parameters() if not p.requires_grad)
    log.info("rank %d/%d: %s, %s, %d trainable tensors, %d frozen parameters", rank, world_size,
             cfg.dist.strategy, "bf16" if bf16 else "fp32", len(trainable), frozen)
    # Frozen parameters (the encoders) stay out of the optimizer: no optimizer state, no gradients.
    optimizer = torch.optim.AdamW(trainable, lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps,
                                  weight_decay=cfg.optim.weight_decay)
    scheduler = WarmupCosine(optimizer, cfg.optim.warmup_steps, cfg.max_steps, cfg.optim.min_lr_ratio)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=ds_config)
    # Dropout and any sampling in the collator differ per rank, and are restored exactly on resume.
    _seed_all(cfg.seed * 1009 + rank + 1)
    batches = data_factory(engine.module, rank, world_size)

    step, run_id = 0, None
    if resume is not None:
        step, run_id = _restore(engine, batches, resume, universal, rank)
    metrics = metrics_factory(run_id) if rank == 0 else None
    manager = CheckpointManager(cfg.checkpoint.dir, cfg.checkpoint.keep_last, rank, world_size, dist.barrier)
    meta = {
        "strategy": cfg.dist.strategy,
        "precision": "bf16" if bf16 else "fp32",
        "tracking_run_id": run_id if metrics is None else metrics.run_id,
        "model_config": model_factory.describe(),
        "train_config": to_dict(cfg),
    }
    try:
        return _loop(cfg, engine, batches, manager, metrics, step, meta, dist)
    finally:
        if metrics is not None:
            metrics.close()


def _loop(cfg: TrainConfig, engine: Any, batches: StatefulBatches, manager: CheckpointManager,
          metrics: MetricsLogger | None, step: int, meta: dict[str, Any], dist: Any) -> int:
    import time

    gas = engine.gradient_accumulation_steps()
    it = _endless(batches)
    samples_per_step = cfg.global_batch_size
    window_start, window_steps = time.perf_counter(), 0
    with PreemptionFlag() as preemption:
        while step < cfg.max_steps:
            loss_sum = torch.zeros((), dtype=torch.float32)
            for _ in range(gas):
                batch = {k: v.to(engine.device) if torch.is_tensor(v) else v for k, v in next(it).items()}
                loss = engine(**batch).loss
                engine.backward(loss)
                engine.step()
                loss_sum += loss.detach().float().cpu()
            step += 1
            window_steps += 1
            # One collective per step carries both the mean loss and "has any rank been asked to stop".
            shared = torch.stack([loss_sum / gas, torch.tensor(float(preemption.requested))]).to(engine.device)
            dist.all_reduce(shared)
            mean_loss, stop = shared[0].item() / manager.world_size, shared[1].item() > 0
            if metrics is not None and (step % cfg.log_every == 0 or step == cfg.max_steps):
                elapsed = time.perf_counter() - window_start
                metrics.log(step, {
                    "loss": mean_loss,
                    "lr": engine.get_lr()[0],
                    "step_time_s": elapsed / window_steps,
                    "samples_per_s": samples_per_step * window_steps / elapsed,
                })
                window_start, window_steps = time.perf_counter(), 0
            if step % cfg.checkpoint.every == 0 or step == cfg.max_steps or stop:
                state = {"step": step, "rng": rng.capture(), "loader": batches.state_dict()}
                manager.save(engine, step, state, meta)
            if stop:
                log.warning("stopped at step %d on request; rerun the same command to resume", step)
                return PREEMPTED_EXIT
    return 0


def _endless(batches: Iterable[dict[str, torch.Tensor]]) -> Iterator[dict[str, torch.Tensor]]:
    """Epoch after epoch: the loader is epoch-sized and its state knows which epoch it is in."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise RuntimeError("the data loader yielded no batch in a whole epoch (is the shard dir empty?)")


def _agree_on_resume(cfg: TrainConfig, world_size: int, rank: int, dist: Any) -> tuple[CheckpointInfo | None, bool]:
    """Rank 0 decides what to resume from; every rank gets the same answer (or the same error)."""
    decision: list[Any] = [None]
    if rank == 0:
        try:
            decision[0] = _resume_decision(cfg, world_size)
        except CheckpointError as e:
            decision[0] = e
    dist.broadcast_object_list(decision, src=0)
    if isinstance(decision[0], CheckpointError):
        raise decision[0]
    return decision[0] or (None, False)


def _resume_decision(cfg: TrainConfig, world_size: int) -> tuple[CheckpointInfo | None, bool]:
    root, mode = cfg.checkpoint.dir, cfg.checkpoint.resume
    if mode == "never":
        if any(tags(root)):
            raise CheckpointError(f"{root} already holds checkpoints and checkpoint.resume=never; "
                                  "use checkpoint.resume=auto to continue, or a fresh checkpoint.dir")
        return None, False
    info = find_resumable(root) if mode == "auto" else validate(Path(mode))
    if info is None:
        log.info("no checkpoint in %s: starting from step 0", root)
        return None, False
    same_layout = info.world_size == world_size and info.meta.get("strategy") == cfg.dist.strategy
    if same_layout:
        log.info("resuming from %s (step %d)", info.path, info.step)
        return info, False
    if info.universal_path.is_dir():
        log.info("resuming from the universal form %s (written by %d ranks, %s)", info.universal_path,
                 info.world_size, info.meta.get("strategy"))
        return info, True
    raise CheckpointError(
        f"{info.path} was written by {info.world_size} ranks with {info.meta.get('strategy')}; this job has "
        f"{world_size} ranks with {cfg.dist.strategy}. Either rerun with the original layout, or convert the "
        f"checkpoint once and rerun this same command:\n  {universal_command(info)}"
    )


def _restore(engine: Any, batches: StatefulBatches, info: CheckpointInfo, universal: bool,
             rank: int) -> tuple[int, str | None]:
    tag_dir = info.universal_path if universal else info.path
    load_path, _ = engine.load_checkpoint(str(tag_dir.parent), tag=tag_dir.name)
    if load_path is None:
        raise CheckpointError(f"DeepSpeed could not load {tag_dir}")
    if universal:
        # Per-rank loader positions do not map onto another world size: continue with a fresh data order
        # (the model, optimizer, scheduler and step are exact).
        log.warning("world size changed: model and optimizer resume exactly, the data order restarts")
    else:
        state = read_trainer_state(info.path, rank)
        batches.load_state_dict(state["loader"])
        rng.restore(state["rng"])
    return info.step, info.meta.get("tracking_run_id")


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _skip_unused_cpu_comm_build(device_name: str) -> None:
    """On CPU, DeepSpeed compiles a shared-memory all-reduce op (~100 s) on the first init_distributed.

    That op serves only inference all-reduce (tensor-parallel inference); training collectives go through
    gloo. Marking it unavailable keeps start-up at seconds on a fresh machine. DeepSpeed exposes no setting
    for this; its op-compatibility table is a module-level dict it documents as editable.
    """
    if device_name != "cpu":
        return
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
