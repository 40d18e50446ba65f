"""One training run on one rank: DeepSpeed set-up, resume, the step loop, checkpoints, preemption.

The model and the data arrive through two small factories (``affectgpt.train.components`` builds the real
AffectGPT and shard loader), so this module holds only the distributed-training mechanics.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.distributed.constants import default_pg_timeout

from affectgpt.config import to_dict
from affectgpt.model.collator import row_groups, sample_lengths, split_packed
from affectgpt.model.prompt import IGNORE_INDEX
from affectgpt.run_metrics import (
    DATA_CORRUPT_SKIPPED,
    EVAL_BEST,
    EVAL_BEST_STEP,
    TRAIN_GRAD_NORM,
    TRAIN_LOSS,
    TRAIN_LR,
    TRAIN_MFU,
    TRAIN_ROWS_PER_STEP,
    TRAIN_SAMPLES_PER_S,
    TRAIN_STEP_TIME_S,
    TRAIN_TOKENS_PER_S,
    eval_key,
)
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
from affectgpt.train.flops import count_flops, matmul_peak_flops
from affectgpt.train.gather import gather_per_block
from affectgpt.train.lock import CheckpointDirLock, DirLockedError
from affectgpt.train.metrics import MetricsLogger, RunMetrics
from affectgpt.train.orphan import stop_when_orphaned
from affectgpt.train.preemption import PreemptionFlag
from affectgpt.train.schedule import WarmupCosine

log = logging.getLogger(__name__)

# 128 + SIGTERM: the run stopped early on request, after writing a checkpoint; rerun the command to continue.
PREEMPTED_EXIT = 143


class StatefulBatches(Protocol):
    """One epoch of batches per ``iter()``, then the next epoch; the position survives a restart. ``skipped``
    lists the corrupt samples replaced so far (``data.on_corrupt=skip``)."""

    skipped: list[str]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def set_epoch(self, epoch: int) -> None: ...


class Job(Protocol):
    """What is trained on what: the model, its data and its tracker (``affectgpt.train.components``)."""

    hidden_size: int  # sizes DeepSpeed's communication buckets

    def build_model(self, ds_config: dict[str, Any]) -> torch.nn.Module:
        """The initialised model; under ZeRO-3 (per ``ds_config``) its large parameters arrive partitioned."""

    def batches(self, model: torch.nn.Module, rank: int, world_size: int) -> StatefulBatches:
        """This rank's share of the training data."""

    def describe(self) -> dict[str, Any]:
        """The model config as plain data, stored in each checkpoint so ``affectgpt export`` can rebuild it."""

    def facts(self, model: torch.nn.Module, batches: StatefulBatches) -> dict[str, Any]:
        """Run facts for the tracker (attention backend, data digest, ...)."""

    def metrics(self, run_id: str | None, facts: dict[str, Any]) -> MetricsLogger | None:
        """Rank 0's tracker beside metrics.jsonl (None: none); continues ``run_id`` when given."""


def run(cfg: TrainConfig, job: Job) -> int:
    """Train on this rank; the exit code for the launcher. A rank that fails exits at once (code 1, the
    traceback logged): tearing the process group down would wait for collectives the other ranks never
    finish, and the launcher stops the other ranks when one exits non-zero."""
    from deepspeed.accelerator import get_accelerator

    _skip_unused_cpu_comm_build(get_accelerator().device_name())
    stop_when_orphaned()
    _init_process_group(get_accelerator().communication_backend_name())
    try:
        return _run(cfg, job)
    except BaseException:  # KeyboardInterrupt too; the traceback is logged, the code says failed
        log.exception("training failed on rank %s", os.environ.get("RANK"))
        for child in multiprocessing.active_children():  # loader workers: they stop on their trainer's SIGTERM
            child.terminate()
        logging.shutdown()
        sys.stdout.flush()
        os._exit(1)


def _run(cfg: TrainConfig, job: Job) -> int:
    import deepspeed
    import deepspeed.comm as dist
    from deepspeed.accelerator import get_accelerator

    deepspeed.init_distributed()  # adopts the process group
    rank, world_size = dist.get_rank(), dist.get_world_size()
    on_gpu = get_accelerator().device_name() != "cpu"
    if not on_gpu:
        share_cores()
    bf16 = cfg.dist.precision == "bf16" or (
        cfg.dist.precision == "auto" and on_gpu and get_accelerator().is_bf16_supported()
    )
    source = template_path(cfg)
    ds_config = fill(load_template(source), cfg, world_size=world_size, bf16=bf16,
                     hidden_size=job.hidden_size, source=str(source))
    lock = CheckpointDirLock(cfg.checkpoint.dir) if rank == 0 and cfg.checkpoint.lock else None
    resume, universal = _agree_on_resume(cfg, world_size, rank, dist, lock)
    if universal:
        ds_config["checkpoint"] = {**ds_config.get("checkpoint", {}), "load_universal": True}

    # The same seed on every rank: all ranks must build the same initial model.
    _seed_all(cfg.seed)
    stage = STRATEGY_STAGE[cfg.dist.strategy]
    model = job.build_model(ds_config).train()  # dropout on; frozen encoders keep their eval mode
    if stage == 3 and cfg.dist.gather == "block":
        gather_per_block(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = sum(_numel(p) for p in model.parameters() if not p.requires_grad)
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
    batches = job.batches(engine.module, rank, world_size)
    validation = None
    if cfg.eval.shards is not None:
        from affectgpt.train.evaluation import Validation

        validation = Validation(cfg.eval, rank, world_size, dist, synced=stage == 3 and world_size > 1)

    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = matmul_peak_flops(engine.device, dtype)
    progress = Progress()
    if resume is not None:
        progress = _restore(engine, batches, resume, universal, rank)
    metrics = None
    if rank == 0:
        facts = {
            "world_size": world_size,
            "zero_stage": stage,
            "precision": str(dtype).removeprefix("torch."),
            "params": sum(_numel(p) for p in model.parameters()),
            "trainable_params": sum(_numel(p) for p in trainable),
            "accumulation_steps": engine.gradient_accumulation_steps(),
            "peak_flops_per_rank": peak,
            **job.facts(engine.module, batches),
        }
        metrics = RunMetrics(cfg, ds_config, progress.run_id, facts, job.metrics)
    manager = CheckpointManager(cfg.checkpoint.dir, cfg.checkpoint.keep_last, rank, world_size, dist.barrier)
    meta = {
        "strategy": cfg.dist.strategy,
        "precision": "bf16" if bf16 else "fp32",
        "tracking_run_id": metrics.run_id if metrics is not None else progress.run_id,
        "model_config": job.describe(),
        "train_config": to_dict(cfg),
    }
    progress.run_id = meta["tracking_run_id"]
    status = "FAILED"
    try:
        code = _loop(cfg, engine, batches, manager, metrics, progress, meta, dist, peak * world_size, validation)
        status = "FINISHED" if code == 0 else "KILLED"
        return code
    finally:
        if metrics is not None:
            metrics.close(status)
        if lock is not None:
            lock.release()


@dataclass
class Progress:
    """What a restart continues: the step, the tracker run, and the training wall time so far."""

    step: int = 0
    run_id: str | None = None
    wall_s: float = 0.0
    # Measured on the first micro-batch of the run and kept: counting runs the step under a dispatch mode
    # whose numerics differ in the last bits, so a resumed run must not count again to stay bit-identical.
    flops_per_micro_batch: int = 0
    best_step: int | None = None  # the best validation so far (eval.metric), kept across restarts
    best_value: float | None = None


def _loop(cfg: TrainConfig, engine: Any, batches: StatefulBatches, manager: CheckpointManager,
          metrics: RunMetrics | None, progress: Progress, meta: dict[str, Any], dist: Any,
          peak_flops: float, validation: Any = None) -> int:
    gas = engine.gradient_accumulation_steps()
    it = _endless(batches)
    session_start = time.perf_counter()
    wall_before = progress.wall_s
    window = _Window()
    skipped = 0
    with PreemptionFlag() as preemption:
        while progress.step < cfg.max_steps:
            lr = engine.get_lr()[0]  # the rate this step's update uses (the scheduler moves on at its end)
            micro_batches = [next(it) for _ in range(gas)]
            # The loss is the mean over the target tokens of the whole global batch (every micro-batch of every
            # rank), as HF Trainer's num_items_in_batch: loss and gradients then do not depend on how the batch
            # is split over ranks and accumulation steps, and a micro-batch of short descriptions weighs less.
            targets = torch.tensor(float(sum(target_tokens(b) for b in micro_batches)), device=engine.device)
            dist.all_reduce(targets)
            global_targets = max(int(targets.item()), 1)
            loss_sum = torch.zeros((), dtype=torch.float32, device=engine.device)
            tokens, forward_passes = 0.0, 0
            micro_rows = budgeted_rows(micro_batches, cfg.data.max_tokens_per_batch, dist, engine.device)
            for m, rows in enumerate(micro_rows):

                def micro_step(rows: list[dict[str, Any]] = rows, last: bool = m == len(micro_rows) - 1,
                               targets: int = global_targets) -> torch.Tensor:
                    return forward_backward(engine, rows, targets, manager.world_size, last)

                if progress.flops_per_micro_batch:
                    loss = micro_step()
                else:
                    loss, progress.flops_per_micro_batch = count_flops(micro_step)
                engine.step()
                loss_sum += loss.float()
                tokens += sum(input_tokens(row) for row in rows)
                forward_passes += len(rows)
            progress.step += 1
            # [global token-mean loss, input tokens, stop requested, corrupt samples skipped, forward passes]:
            # summed over ranks.
            totals = torch.stack([
                loss_sum,
                torch.tensor(tokens, device=engine.device),
                torch.tensor(float(preemption.requested), device=engine.device),
                torch.tensor(float(len(batches.skipped)), device=engine.device),
                torch.tensor(float(forward_passes), device=engine.device),
            ])
            dist.all_reduce(totals)
            stop = bool(totals[2].item() > 0)
            skipped = int(totals[3].item())
            window.add(float(totals[1].item()), float(totals[4].item()))
            if metrics is not None and (progress.step % cfg.log_every == 0 or progress.step == cfg.max_steps):
                seconds = window.seconds()
                step_flops = progress.flops_per_micro_batch * gas * manager.world_size
                values = {
                    TRAIN_LOSS: float(totals[0].item()),
                    TRAIN_LR: lr,
                    TRAIN_STEP_TIME_S: seconds / window.steps,
                    TRAIN_SAMPLES_PER_S: cfg.global_batch_size * window.steps / seconds,
                    TRAIN_MFU: step_flops * window.steps / seconds / peak_flops,
                }
                grad_norm = engine.get_global_grad_norm()
                if grad_norm is not None:
                    values[TRAIN_GRAD_NORM] = float(grad_norm)
                if window.tokens:
                    values[TRAIN_TOKENS_PER_S] = window.tokens / seconds
                if skipped:
                    values[DATA_CORRUPT_SKIPPED] = skipped
                if cfg.data.max_tokens_per_batch is not None:  # what the budget costs: rows over all ranks
                    values[TRAIN_ROWS_PER_STEP] = window.rows / window.steps
                metrics.log(progress.step, values)
                window = _Window()
            best = False
            if validation is not None and (progress.step % cfg.eval.every == 0 or progress.step == cfg.max_steps):
                best = _validate(validation, engine, metrics, progress, cfg, dist)
            progress.wall_s = wall_before + time.perf_counter() - session_start
            # A new best step is always checkpointed, so that `best` can point at it.
            if progress.step % cfg.checkpoint.every == 0 or progress.step == cfg.max_steps or stop or best:
                state = {**asdict(progress), "rng": rng.capture(), "loader": batches.state_dict()}
                manager.save(engine, progress.step, state, meta, best=best)
            if stop:
                _report_skipped(batches, skipped)
                log.warning("stopped at step %d on request; rerun the same command to resume", progress.step)
                return PREEMPTED_EXIT
    _report_skipped(batches, skipped)
    if metrics is not None:
        metrics.finish(progress.step, progress.wall_s)
    return 0


def _validate(validation: Any, engine: Any, metrics: RunMetrics | None, progress: Progress, cfg: TrainConfig,
              dist: Any) -> bool:
    """Evaluate on the validation split (all ranks); log ``eval/*`` at this step and tell every rank whether
    it is the best step so far by ``eval.<metric>`` (higher is better)."""
    values = validation.run(engine.module)
    decision: list[Any] = [None]
    if values is not None:  # rank 0
        key = eval_key(cfg.eval.metric)
        if key not in values:
            decision[0] = ValueError(f"eval.metric={cfg.eval.metric}: no {key} among the validation metrics "
                                     f"({', '.join(sorted(values))})")
        else:
            improved = progress.best_value is None or values[key] > progress.best_value
            best_step, best_value = (progress.step, values[key]) if improved else (progress.best_step,
                                                                                  progress.best_value)
            decision[0] = (improved, best_step, best_value)
            metrics.log(progress.step, {**values, EVAL_BEST_STEP: best_step, EVAL_BEST: best_value})
            if improved:
                metrics.set_tags({"best_step": best_step, f"best_{cfg.eval.metric}": best_value,
                                  "selection": cfg.eval.rule})
    dist.broadcast_object_list(decision, src=0)
    if isinstance(decision[0], Exception):
        raise decision[0]
    improved, progress.best_step, progress.best_value = decision[0]
    return improved


def _report_skipped(batches: StatefulBatches, total: int) -> None:
    """The end-of-run summary of data.on_corrupt=skip: each rank lists what it replaced."""
    if batches.skipped:
        log.warning("data.on_corrupt=skip replaced %d corrupt sample(s) on this rank (%d on all ranks) in this "
                    "session:\n  %s", len(batches.skipped), total, "\n  ".join(batches.skipped))


def budgeted_rows(micro_batches: list[dict[str, torch.Tensor]], max_tokens: int | None, dist: Any,
                  device: torch.device) -> list[list[dict[str, torch.Tensor]]]:
    """Each micro-batch as the rows its forward passes take: itself, or with a token budget
    (``data.max_tokens_per_batch``) its packed row cut into rows of at most ``max_tokens`` tokens. Every rank
    cuts its i-th micro-batch into as many rows as the rank that needs most (one all-reduce per step): ZeRO-3
    gathers parameters and ZeRO-2 reduces gradients in every forward and backward, so all ranks must run the
    same number of them."""
    if max_tokens is None:
        return [[batch] for batch in micro_batches]
    need = torch.tensor([packed_row_count(batch, max_tokens) for batch in micro_batches], device=device)
    dist.all_reduce(need, op=dist.ReduceOp.MAX)
    return [split_packed(batch, max_tokens, rows) for batch, rows in zip(micro_batches, need.tolist(), strict=True)]


def forward_backward(engine: Any, rows: list[dict[str, torch.Tensor]], targets: int, world_size: int,
                     last: bool) -> torch.Tensor:
    """One micro-batch's forward and backward, row after row (only one row's activations live at a time); its
    loss summed over target tokens and divided by ``targets``, the global batch's count. ``last``: the step's
    last micro-batch, whose last row is the accumulation boundary.

    The LLM sums each row's token losses and divides by the global count; DeepSpeed averages gradients over
    ranks, which the factor world_size undoes, and scale_wrt_gas=False keeps it from dividing by the
    accumulation steps: the gradients add up to those of the global mean. The boundary is set explicitly
    before every row (DeepSpeed's manual-boundary mode), since a budget makes more backward passes than the
    configured accumulation steps: every row but the boundary's only accumulates, and ZeRO-2 or DDP reducing
    at a backward they took for the boundary would drop the rows after it."""
    loss = torch.zeros((), device=engine.device)
    for i, row in enumerate(rows):
        # non_blocking: a pinned batch (CUDA) copies while the previous step's kernels still run.
        batch = {k: v.to(engine.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in row.items()}
        engine.set_gradient_accumulation_boundary(last and i == len(rows) - 1)
        row_loss = engine(**batch, num_items_in_batch=targets).loss
        engine.backward(row_loss * world_size, scale_wrt_gas=False)
        loss += row_loss.detach()
    return loss


def packed_row_count(batch: dict[str, torch.Tensor], max_tokens: int) -> int:
    """The fewest rows of at most ``max_tokens`` tokens that a packed batch splits into."""
    return len(row_groups(sample_lengths(batch), max_tokens))


def target_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Tokens the causal-LM loss covers in a batch: labels shifted by one (token t predicts t + 1), ignored
    positions excluded. A packed row's samples each start with masked prompt tokens, so none crosses a border."""
    return int((batch["labels"][..., 1:] != IGNORE_INDEX).sum())


def input_tokens(batch: dict[str, torch.Tensor]) -> float:
    """Real (non-padding) input tokens: a padded batch's attention mask, or every token of a packed row."""
    mask = batch.get("attention_mask")
    return float(mask.sum()) if mask is not None else float(batch["input_ids"].numel())


class _Window:
    """Steps, tokens, forward passes (rows) and time since the last metrics line."""

    def __init__(self) -> None:
        self.start, self.steps, self.tokens, self.rows = time.perf_counter(), 0, 0.0, 0.0

    def add(self, tokens: float, rows: float) -> None:
        self.steps += 1
        self.tokens += tokens
        self.rows += rows

    def seconds(self) -> float:
        return time.perf_counter() - self.start


def _endless(batches: Iterable[dict[str, torch.Tensor]]) -> Iterator[dict[str, torch.Tensor]]:
    """Epoch after epoch (the loader is epoch-sized and its state knows the epoch). A run restored exactly at
    the end of an epoch first gets an empty pass; two in a row mean there is no data."""
    empty_passes = 0
    while True:
        produced = False
        for batch in batches:
            produced = True
            yield batch
        empty_passes = 0 if produced else empty_passes + 1
        if empty_passes == 2:
            raise RuntimeError("the data loader yielded no batch in a whole epoch (is the shard dir empty?)")


def _agree_on_resume(cfg: TrainConfig, world_size: int, rank: int, dist: Any,
                     lock: CheckpointDirLock | None) -> tuple[CheckpointInfo | None, bool]:
    """Rank 0 takes the checkpoint dir's lock (kept until the process exits) and decides what to resume from;
    every rank gets the same answer (or the same error)."""
    decision: list[Any] = [None]
    if rank == 0:
        try:
            if lock is not None:
                lock.acquire()
            decision[0] = _resume_decision(cfg, world_size)
        except (CheckpointError, DirLockedError) as e:
            decision[0] = e
    dist.broadcast_object_list(decision, src=0)
    if isinstance(decision[0], (CheckpointError, DirLockedError)):
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
             rank: int) -> Progress:
    tag_dir = info.universal_path if universal else info.path
    load_path, _ = engine.load_checkpoint(str(tag_dir.parent), tag=tag_dir.name)
    if load_path is None:
        raise CheckpointError(f"DeepSpeed could not load {tag_dir}")
    if universal:
        # Per-rank loader positions do not map onto another world size: the data continue from the start of
        # the next epoch (model, optimizer, scheduler and step are exact; the sample order is not).
        state = read_trainer_state(info.path, 0)
        batches.set_epoch(int(state["loader"]["epoch"]) + 1)
        log.warning("world size changed: resuming exactly except the data order, from epoch %d",
                    int(state["loader"]["epoch"]) + 1)
    else:
        state = read_trainer_state(info.path, rank)
        batches.load_state_dict(state["loader"])
        rng.restore(state["rng"])
    return Progress(info.step, info.meta.get("tracking_run_id"), float(state["wall_s"]),
                    int(state["flops_per_micro_batch"]), state.get("best_step"), state.get("best_value"))


def share_cores() -> int:
    """On CPU, the node's ranks split its cores: each rank's torch would otherwise start a thread per core, and N
    ranks would run N times as many threads as there are cores (torchrun sets OMP_NUM_THREADS=1 for the same
    reason; the deepspeed launcher sets it only with --bind_cores_to_rank). An OMP_NUM_THREADS the user set is
    kept. Returns the rank's threads."""
    if "OMP_NUM_THREADS" not in os.environ:
        local = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("LOCAL_SIZE") or 1)  # torchrun, deepspeed
        cores = len(os.sched_getaffinity(0))
        torch.set_num_threads(max(1, cores // local))
        log.info("%d CPU thread(s) per rank: %d cores shared by %d local rank(s)", torch.get_num_threads(), cores,
                 local)
    return torch.get_num_threads()


def _init_process_group(backend: str) -> None:
    """The process group, from the environment both launchers set, with its rendezvous store listening on
    MASTER_ADDR only: torch's own store (``env://``) listens on every interface, where anyone who reaches the
    port could join or disturb the job. torchrun hosts the store in its agent (TORCHELASTIC_USE_AGENT_STORE);
    that one is torchrun's and left to it."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        torch.distributed.init_process_group(backend)
        return
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    listen_fd = None
    if rank == 0:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listen_fd = socket.create_server(address[:2], family=family, backlog=max(128, world_size)).detach()
    store = torch.distributed.TCPStore(host, port, world_size, is_master=rank == 0, master_listen_fd=listen_fd,
                                       timeout=default_pg_timeout, multi_tenant=True)
    torch.distributed.init_process_group(backend, store=store, rank=rank, world_size=world_size)


def _numel(p: torch.nn.Parameter) -> int:
    return p.ds_numel if hasattr(p, "ds_numel") else p.numel()


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
