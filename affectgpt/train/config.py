"""The training config: one YAML (``configs/stage1.yaml``) -> ``TrainConfig``; unknown keys are rejected.

Batch sizes are stated in samples: ``global_batch_size`` stays fixed whatever the world size, and gradient
accumulation is derived from it (``global = micro * world * accumulation``), so a run on 2 ranks and one on 64
see the same optimisation problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from affectgpt.eval.generate import GenerationConfig
from affectgpt.eval.tasks import TASKS
from affectgpt.model.lora import LoraConfig
from affectgpt.tracking import TrackingConfig


@dataclass
class ModelSection:
    # AffectGPTConfig YAML (configs/models/*.yaml); unused when init.from_model is set (its recipe is used).
    recipe: Path | None = None
    # Keys merged over the recipe, e.g. ``model.set.llm_init=random`` on the command line.
    set: dict[str, Any] = field(default_factory=dict)
    # Recompute the LLM's layer activations in the backward pass: less memory for ~1/3 more compute (long
    # prompts, large backbones). every_n_layers > 1 checkpoints only every n-th layer (a middle ground).
    activation_checkpointing: bool = False
    activation_checkpointing_every_n_layers: int = 1

    def __post_init__(self) -> None:
        if self.activation_checkpointing_every_n_layers < 1:
            raise ValueError("model.activation_checkpointing_every_n_layers must be >= 1, "
                             f"got {self.activation_checkpointing_every_n_layers}")
        if self.activation_checkpointing_every_n_layers > 1 and not self.activation_checkpointing:
            raise ValueError("model.activation_checkpointing_every_n_layers is set but "
                             "model.activation_checkpointing is false")


@dataclass
class InitSection:
    """Where the weights come from. The comparisons (LLM pretrained vs random: ``model.set.llm_init``; Stage 2
    from Stage 1 or from the base model: ``from_model``; fusion/projectors trained or fresh: ``adapter``) are
    settings, not code changes."""

    # An exported model dir (``affectgpt export``, e.g. the Stage 1 export): its LLM and encoders are the
    # starting weights and its recipe the architecture. None: build from model.recipe (the base model).
    from_model: Path | None = None
    # Fusion, projectors and missing-modality tokens: from from_model's adapter, or freshly initialised.
    adapter: Literal["checkpoint", "fresh"] = "checkpoint"


@dataclass
class DataSection:
    shards: Path = Path("work/shards/coarse")
    # Loader worker processes per rank. auto: on CUDA, workers that decode while the GPU computes (up to 4, one
    # core per rank kept for the trainer); on CPU none, since the training step already uses the rank's cores
    # and a worker competes with it (benchmarks/loader_throughput.py measures both). Part of the reading plan:
    # a run resumes only with the worker count it started with.
    workers: int | Literal["auto"] = "auto"
    seed: int = 0
    # A sample whose digest does not match, or lost to a truncated shard: fail names it and stops the run;
    # skip logs it, trains on the next intact sample of its shard instead, counts it (data/corrupt_skipped).
    on_corrupt: Literal["fail", "skip"] = "fail"
    # Padding-free batches: each micro-batch's samples concatenated into one row, their position_ids restarting
    # at every sample (FlashAttention-2 and SDPA/eager then attend within each sample only). The micro-batch
    # stays micro_batch_size samples; its token count varies. None (auto): on with FlashAttention-2 or with
    # max_tokens_per_batch, off otherwise (SDPA and eager isolate the rows with a full block-diagonal mask,
    # which costs more than the padding it saves at these lengths; benchmarks/train_zero.py --variants).
    packed: bool | None = None
    # Token budget of one forward pass: each packed micro-batch is cut, in order, into consecutive rows of at
    # most this many tokens, forwarded and backwarded one after the other before the micro-batch's step (every
    # rank runs as many rows as the rank that needs most). Activation memory then follows the budget while the
    # samples, their order, the loss (token mean over the global batch) and the resume position stay those of
    # micro_batch_size: set a large micro_batch_size and bound the memory here. A sample longer than the budget
    # stops the run with its name. None: one row per micro-batch.
    max_tokens_per_batch: int | None = None

    def __post_init__(self) -> None:
        if self.workers != "auto" and self.workers < 0:
            raise ValueError(f"data.workers must be >= 0, got {self.workers}")
        if self.max_tokens_per_batch is not None:
            if self.max_tokens_per_batch < 1:
                raise ValueError(f"data.max_tokens_per_batch must be >= 1, got {self.max_tokens_per_batch}")
            if self.packed is False:
                raise ValueError("data.max_tokens_per_batch cuts packed micro-batches into rows, but "
                                 "data.packed=false; set data.packed=true (or null), or drop data.max_tokens_per_batch")


@dataclass
class OptimSection:
    lr: float = 1e-4
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 10
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass
class DistSection:
    # zero3 (default): parameters, gradients and optimizer state partitioned; zero2: gradients + optimizer
    # state; ddp: DeepSpeed ZeRO stage 0, i.e. replicated model and all-reduced gradients (plain DDP).
    strategy: Literal["zero3", "zero2", "ddp"] = "zero3"
    # DeepSpeed JSON template; its "auto" values are filled from this config.
    # None: the packaged affectgpt/train/deepspeed/<strategy>.json
    deepspeed_config: Path | None = None
    # auto: bf16 on GPUs, fp32 on CPU (these CPUs have no fast bf16 matmul).
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    # ZeRO-3's unit of gathering. block: each transformer block (the LLM's and the encoders' layers, as their
    # models name them in _no_split_modules) gathers its parameters at once and its inner modules get no hooks,
    # FSDP's per-block granularity; module: DeepSpeed's default, hooks on every module. Per block, generation
    # under ZeRO-3 (validation) runs 2-2.5x faster on the demo's model (launcher/README.md).
    gather: Literal["block", "module"] = "block"


@dataclass
class CheckpointSection:
    dir: Path = Path("work/checkpoints/run")
    every: int = 100  # optimizer steps between checkpoints; one is always written at the end
    keep_last: int = 3
    # auto: continue from dir/latest when it exists, else start fresh; never: always start fresh (refuses a
    # dir that already has checkpoints); or a path to one checkpoint tag dir.
    resume: str = "auto"
    # Rank 0 holds dir/train.lock for the run's lifetime, so a second job on the same dir is refused
    # (affectgpt.train.lock: exact on local disks and NFS; Lustre needs -o flock). false: no lock.
    lock: bool = True

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"checkpoint.every must be >= 1, got {self.every}")
        if self.keep_last < 1:
            raise ValueError(f"checkpoint.keep_last must be >= 1, got {self.keep_last}")


@dataclass(kw_only=True)
class EvalSection(GenerationConfig):
    """Evaluation during training: every ``every`` steps all ranks describe their share of the validation
    samples, rank 0 scores them as ``affectgpt eval`` does and logs ``eval/*`` at that step; the step with the
    highest ``eval/<metric>`` so far is checkpointed and named by ``<checkpoint.dir>/best``. Generation
    (``batch_size`` per rank, ``max_new_tokens``, ``repetition_penalty``) is ``GenerationConfig``'s; the
    shipped stage configs keep validation short."""

    shards: Path | None = None  # the validation split's shard dir (val.csv packed); None: no evaluation
    every: int = 50  # optimizer steps between evaluations
    samples: int | None = None  # the first N validation samples; None: all of them
    metric: str = "avg"  # selects the best step: eval/<metric>, higher is better (avg: level-2 Avg)
    task: str = "open_vocabulary"  # how the validation ground truth is scored (affectgpt.eval.tasks)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.every < 1:
            raise ValueError(f"eval.every must be >= 1, got {self.every}")
        if self.samples is not None and self.samples < 1:
            raise ValueError(f"eval.samples must be >= 1, got {self.samples}")
        if self.task not in TASKS:
            raise ValueError(f"eval.task must be one of {', '.join(TASKS)}, got {self.task!r}")

    @property
    def rule(self) -> str:
        """How this run's selected checkpoint is chosen, as studies and comparisons report it."""
        return f"best-val:{self.metric}" if self.shards is not None else "last"


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    init: InitSection = field(default_factory=InitSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    dist: DistSection = field(default_factory=DistSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    eval: EvalSection = field(default_factory=EvalSection)
    # MLflow (rank 0). Disabled: metrics go only to <checkpoint.dir>/metrics.jsonl, which is always written.
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(enabled=False))
    # full: every LLM parameter trains; lora: low-rank adapters on the LLM's projections (the rest frozen).
    # Fusion and projectors train either way; the encoders stay frozen.
    finetune: Literal["full", "lora"] = "full"
    lora: LoraConfig | None = None  # finetune=lora's settings (None: LoraConfig's defaults)
    tags: dict[str, str] = field(default_factory=dict)  # MLflow run tags, e.g. tags.stage=1 tags.init=random
    run_name: str | None = None  # MLflow run name; None: the checkpoint dir's name
    global_batch_size: int = 8  # samples per optimizer step, over all ranks
    micro_batch_size: int = 2  # samples per rank per forward/backward
    max_steps: int = 100  # optimizer steps
    seed: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        for name in ("global_batch_size", "micro_batch_size", "max_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.model.recipe is None and self.init.from_model is None:
            raise ValueError("set model.recipe (build a model) or init.from_model (start from an exported one)")
        if self.lora is not None and self.finetune != "lora":
            raise ValueError(f"lora.* is set but finetune={self.finetune}; set finetune=lora, or drop lora")

    def lora_config(self) -> LoraConfig | None:
        """The LoRA settings when finetune=lora, else None."""
        return (self.lora or LoraConfig()) if self.finetune == "lora" else None

    def accumulation_steps(self, world_size: int) -> int:
        """Micro-batches per rank per optimizer step that keep ``global_batch_size`` fixed."""
        per_pass = self.micro_batch_size * world_size
        if self.global_batch_size % per_pass:
            fits = [m for m in range(1, self.global_batch_size + 1) if self.global_batch_size % (m * world_size) == 0]
            raise ValueError(
                f"global_batch_size={self.global_batch_size} is not a multiple of micro_batch_size x world size "
                f"= {self.micro_batch_size} x {world_size}; micro_batch_size values that fit: {fits or 'none'}"
            )
        return self.global_batch_size // per_pass
