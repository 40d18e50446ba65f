"""Capacity planning for a training run, offline: does a recipe fit on N GPUs, at which micro-batch, and how long
does Stage 1 take? (``affectgpt plan``.)

Every figure comes from the recipe's real architecture, built on the ``meta`` device (``AffectGPT.on_meta``):

* parameters: counted on the meta build, trainable (LLM, fusion, projectors) apart from frozen (the encoders);
* FLOPs per sample: one forward + backward of the meta model on fake tensors under ``affectgpt.train.flops
  .count_flops``, the counter the trainer logs ``train/mfu`` with; the LM head runs on the description's
  positions only (``max_description_tokens`` + 1: the longest description and its end token), as in training;
  with activation checkpointing the decoder layers' forward runs twice, and the trainer counts it twice too;
* activations: the bytes autograd saves for the backward pass in that same pass (parameters excluded), split
  into what the LLM's decoder layers save and the rest (embeddings, fusion, logits and loss). Activation
  checkpointing keeps each layer's input and recomputes one layer at a time. The largest saved tensor is
  counted once more for its gradient (the logits' gradient is the peak of the backward pass);
* model states per rank, bytes per parameter (``p`` = 2 in bf16, 4 in fp32; N ranks)::

      trainable   DDP      p param + p grad + 8 Adam m, v (+ 4 fp32 master + 4 fp32 grad when p < 4)
                  ZeRO-2   p param + (p grad + 4 master + 8 Adam (+ 4 fp32 grad when p < 4)) / N
                  ZeRO-3   (p param + p grad + 4 master + 8 Adam (+ 4 fp32 grad when p < 4)) / N
      frozen      p per parameter, divided by N under ZeRO-3 only

  DeepSpeed's ZeRO optimizers keep an fp32 master partition even for fp32 parameters (stage 0 does not), and in
  bf16 the step converts the gradient partition to fp32. ZeRO-3 also gathers whole blocks while they run
  (``dist.gather=block``, ``affectgpt.train.gather``): the largest block's, or embedding's, parameters and
  gradients (``2 p`` bytes each) are live on top. ``benchmarks/train_zero.py``
  prints these predictions against model-state bytes measured on the real ranks.

The largest micro-batch that fits leaves ``headroom`` of the GPU free (CUDA context, allocator fragmentation,
communication buffers). Wall time: samples x epochs x FLOPs per sample / (GPUs x peak x MFU).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

GB = 1e9
STRATEGIES = ("zero3", "zero2", "ddp")
# The chat template, the instruction and the "Video:/Audio:/Subtitle:" labels of the prompt (affectgpt.model
# .prompt) around the placeholders, subtitle and description: an allowance, as planning has no tokenizer.
PROMPT_OVERHEAD_TOKENS = 64


@dataclass
class PlanConfig:
    """Settings of ``affectgpt plan``: the recipe, the cluster and the run to size.

    recipe: model recipe (configs/models/*.yaml)
    gpus: GPUs per node
    nodes: nodes
    gpu_mem_gb: GB of memory of one GPU (H100 and A100: 80, H200: 141)
    peak_tflops: dense bf16 peak TFLOP/s of one GPU (H100 SXM: 989, A100: 312); MFU is quoted against it
    mfu: model FLOPs utilisation the wall-time projection assumes
    precision: what the GPUs train in (the bytes of parameters, gradients and activations)
    global_batch: samples per optimizer step, over all ranks
    seq: tokens per sample (none: the recipe's longest prompt + description)
    samples: Stage 1 corpus size (EMER-Coarse has ~115k clips)
    epochs: passes over the corpus the wall time counts
    headroom: fraction of GPU memory kept free
    loader_workers: DataLoader workers per rank (readers of the shard loader)
    samples_per_shard: the pack job's --samples-per-shard
    """

    recipe: Path = Path("configs/models/affectgpt-qwen2.5-7b.yaml")
    gpus: int = 8
    nodes: int = 1
    gpu_mem_gb: float = field(default=80.0, metadata={"flag": "gpu_mem"})
    peak_tflops: float = 989.0
    mfu: float = 0.4
    precision: Literal["bf16", "fp32"] = "bf16"
    global_batch: int = 128
    seq: int | None = None
    samples: int = 115_000
    epochs: float = 1.0
    headroom: float = 0.1
    loader_workers: int = 4
    samples_per_shard: int = 256

    def __post_init__(self) -> None:
        for key in ("gpus", "nodes", "global_batch", "samples", "loader_workers", "samples_per_shard"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("gpu_mem_gb", "peak_tflops", "epochs"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)}")
        if not 0 < self.mfu <= 1:
            raise ValueError(f"mfu must be in (0, 1], got {self.mfu}")
        if not 0 <= self.headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), got {self.headroom}")
        if self.seq is not None and self.seq < 1:
            raise ValueError(f"seq must be >= 1, got {self.seq}")

    @property
    def world_size(self) -> int:
        return self.gpus * self.nodes


@dataclass(frozen=True)
class ModelFacts:
    """What the meta-device build and one traced step say about a recipe, per sample of ``seq`` tokens."""

    components: dict[str, dict[str, int]]  # name -> {"params", "trainable"}
    trainable: int
    frozen: int
    largest_module: int  # parameters of the largest unit ZeRO-3 gathers whole (a block: train.gather)
    layers: int  # LLM decoder layers
    seq: int
    flops: int  # forward + backward, as count_flops counts it
    flops_checkpointed: int  # the same with the decoder layers' forward recomputed
    layer_bytes: int  # bytes saved for backward by one decoder layer
    layer_input_bytes: int  # one decoder layer's input (all activation checkpointing keeps)
    other_bytes: int  # saved outside the decoder layers (embeddings, fusion, logits, loss)
    largest_saved_bytes: int

    def activation_bytes(self, checkpointed: bool) -> int:
        if checkpointed:
            held = self.layers * self.layer_input_bytes + self.layer_bytes
        else:
            held = self.layers * self.layer_bytes
        return held + self.other_bytes + self.largest_saved_bytes


def default_seq(model_cfg: Any) -> int:
    """The longest training sequence a recipe produces: placeholders, subtitle, description + end token, and
    the prompt's fixed text."""
    queries = sum(m.num_queries for m in (model_cfg.video, model_cfg.audio) if m is not None)
    return (queries + model_cfg.pre_fusion_tokens + model_cfg.max_subtitle_tokens
            + model_cfg.max_description_tokens + 1 + PROMPT_OVERHEAD_TOKENS)


def measure(model_cfg: Any, seq: int, targets: int | None = None) -> ModelFacts:
    """Build ``model_cfg`` on the meta device and trace one training step of one sample on fake tensors, ``seq``
    tokens long with ``targets`` of them (default: the longest description + its end token; at most ``seq`` - 1)
    under the loss."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from affectgpt.model import AffectGPT
    from affectgpt.model.affectgpt import target_loss
    from affectgpt.train.flops import count_flops
    from affectgpt.train.gather import largest_gather

    targets = min(model_cfg.max_description_tokens + 1 if targets is None else targets, seq - 1)
    model = AffectGPT.on_meta(model_cfg).train()
    layers = _decoder_layers(model.llm)
    inside = {"depth": 0}
    for layer in layers:
        layer.register_forward_pre_hook(lambda *_: inside.__setitem__("depth", inside["depth"] + 1))
        layer.register_forward_hook(lambda *_: inside.__setitem__("depth", inside["depth"] - 1))
    saved: dict[int, tuple[int, bool]] = {}  # storage -> (bytes, saved inside a decoder layer)

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved.setdefault(storage._cdata, (storage.nbytes(), inside["depth"] > 0))
        return t

    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        # The fake twin of every parameter, held so that each op meets the same one: saved weights are not
        # activations, and are recognised by their storage.
        fakes = [mode.from_tensor(p) for p in model.parameters()]
        params = {f.untyped_storage()._cdata for f in fakes}
        inputs = _fake_batch(model, seq)

        def step() -> torch.Tensor:  # AffectGPT.forward with labels, its target positions known statically
            mask = inputs.pop("attention_mask")
            hidden = model.llm.get_decoder()(inputs_embeds=model.embed(**inputs), attention_mask=mask,
                                             use_cache=False).last_hidden_state
            labels = torch.zeros(targets, dtype=torch.long, device="meta")
            return target_loss(model.llm, hidden[0, -targets - 1:-1], labels, targets)

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss, forward = count_flops(step)
        _, backward = count_flops(loss.backward)
        # Forward FLOPs of the decoder layers: what activation checkpointing executes a second time.
        _, layer_forward = count_flops(lambda: _decoder_forward(model.llm, seq))
    activations = {k: v for k, v in saved.items() if k not in params}
    in_layers = sum(b for b, inner in activations.values() if inner)
    hidden = model.llm.config.get_text_config().hidden_size
    components = _components(model)
    trainable = sum(c["trainable"] for c in components.values())
    total = sum(c["params"] for c in components.values())
    return ModelFacts(
        components=components, trainable=trainable, frozen=total - trainable,
        largest_module=largest_gather(model),
        layers=len(layers), seq=seq, flops=forward + backward, flops_checkpointed=forward + backward + layer_forward,
        layer_bytes=in_layers // len(layers), layer_input_bytes=seq * hidden * _itemsize(model_cfg.dtype),
        other_bytes=sum(b for b, inner in activations.values() if not inner),
        largest_saved_bytes=max((b for b, _ in activations.values()), default=0),
    )


def model_state_bytes(strategy: str, trainable: int, frozen: int, param_bytes: int, world_size: int) -> float:
    """Parameters, gradients and optimizer state held per rank (see the module docstring)."""
    p, n = param_bytes, world_size
    fp32_grad = 4 if p < 4 else 0
    if strategy == "ddp":
        master = 4 + fp32_grad if p < 4 else 0  # stage 0 in fp32 steps the parameters themselves
        return trainable * (2 * p + 8 + master) + frozen * p
    sharded = p + 4 + 8 + fp32_grad  # gradient, fp32 master, Adam m and v (+ fp32 gradient at the step)
    if strategy == "zero2":
        return trainable * (p + sharded / n) + frozen * p
    if strategy == "zero3":
        return (trainable * (p + sharded) + frozen * p) / n
    raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")


def build_plan(cfg: PlanConfig, facts: ModelFacts) -> dict[str, Any]:
    """The plan as plain data (what ``--json`` prints and the table shows)."""
    p = 2 if cfg.precision == "bf16" else 4
    world = cfg.world_size
    usable = cfg.gpu_mem_gb * GB * (1 - cfg.headroom)
    strategies = {}
    for strategy in STRATEGIES:
        states = model_state_bytes(strategy, facts.trainable, facts.frozen, p, world)
        live = 2 * p * facts.largest_module if strategy == "zero3" else 0
        rows = {}
        for checkpointed in (False, True):
            act = facts.activation_bytes(checkpointed)
            fits = max(0, math.floor((usable - states - live) / act)) if usable > states + live else 0
            micro = _micro_batch(fits, cfg.global_batch, world)
            rows["checkpointed" if checkpointed else "plain"] = {
                "activation_gb_per_sample": act / GB, "max_micro_batch": fits, "micro_batch": micro,
                "accumulation": cfg.global_batch // (micro * world) if micro else None,
                "peak_gb_at_micro_batch": (states + live + micro * act) / GB if micro else None,
            }
        strategies[strategy] = {"model_states_gb": states / GB, "zero3_live_params_gb": live / GB, **rows}
    time = {}
    for name, flops in (("plain", facts.flops), ("checkpointed", facts.flops_checkpointed)):
        seconds = cfg.samples * cfg.epochs * flops / (world * cfg.peak_tflops * 1e12 * cfg.mfu)
        time[name] = {"flops_per_sample": flops, "hours": seconds / 3600,
                      "samples_per_s": world * cfg.peak_tflops * 1e12 * cfg.mfu / flops}
    return {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(cfg).items()},
        "world_size": world,
        "params": {"components": facts.components, "trainable": facts.trainable, "frozen": facts.frozen,
                   "largest_module": facts.largest_module},
        "seq": facts.seq,
        "strategies": strategies,
        "stage1": time,
        "deepspeed_zero3_estimate_gb": _deepspeed_estimate(facts, cfg) / GB,
        "data": data_plan(cfg, _loader_batch(strategies["zero3"])),
    }


def _loader_batch(zero3: dict[str, Any]) -> int:
    """The micro-batch ZeRO-3 would run (without checkpointing if it fits): the loader's batch per rank."""
    return zero3["plain"]["micro_batch"] or zero3["checkpointed"]["micro_batch"] or 1


def data_plan(cfg: PlanConfig, batch_size: int) -> dict[str, Any]:
    """The pack job's shard advice for this cluster, and one simulated epoch of the loader's dealing over
    the pack job's shard sizes at ``batch_size`` samples per rank."""
    from shards.loader import Dealing, coverage, shard_advice
    from shards.schema import shard_sizes

    readers = max(cfg.loader_workers, 1)
    advice = shard_advice(cfg.samples, cfg.samples_per_shard, cfg.world_size * readers)
    counts = tuple(shard_sizes(cfg.samples, cfg.samples_per_shard))
    dealing = Dealing(counts, cfg.world_size, readers, batch_size, seed=0, resampled=True)
    return {**advice, "batch_size": batch_size, "epoch": coverage(dealing)}


def render(plan: dict[str, Any]) -> str:
    """The plan as a text table."""
    cfg, params = plan["config"], plan["params"]
    lines = [f"plan: {cfg['recipe']} on {cfg['nodes']} node(s) x {cfg['gpus']} GPU(s) = {plan['world_size']} "
             f"ranks, {cfg['gpu_mem_gb']:g} GB each, {cfg['precision']}, {plan['seq']} tokens per sample, "
             f"global batch {cfg['global_batch']}", "",
             f"{'component':<16} {'parameters':>16} {'trainable':>16}"]
    for name, c in params["components"].items():
        lines.append(f"{name:<16} {c['params']:>16,} {c['trainable']:>16,}")
    lines.append(f"{'total':<16} {params['trainable'] + params['frozen']:>16,} {params['trainable']:>16,}")
    lines += ["", f"memory per GPU (GB; usable {cfg['gpu_mem_gb'] * (1 - cfg['headroom']):.1f} of "
              f"{cfg['gpu_mem_gb']:g})",
              f"{'strategy':<8} {'model states':>12} {'ZeRO-3 live':>11} {'act/sample':>10} {'act/sample AC':>13} "
              f"{'max micro':>9} {'max micro AC':>12}"]
    for name, s in plan["strategies"].items():
        lines.append(f"{name:<8} {s['model_states_gb']:>12.1f} {s['zero3_live_params_gb']:>11.1f} "
                     f"{s['plain']['activation_gb_per_sample']:>10.2f} "
                     f"{s['checkpointed']['activation_gb_per_sample']:>13.2f} "
                     f"{_fits(s['plain']):>9} {_fits(s['checkpointed']):>12}")
    zero3 = plan["strategies"]["zero3"]
    lines.append(f"ZeRO-3 states + live parameters: {zero3['model_states_gb'] + zero3['zero3_live_params_gb']:.1f} "
                 f"GB; DeepSpeed's estimate_zero3_model_states_mem_needs (every parameter trainable, no offload): "
                 f"{plan['deepspeed_zero3_estimate_gb']:.1f} GB")
    lines.append("(AC = activation checkpointing; a micro-batch is usable when global batch / (micro x ranks) is "
                 "whole)")
    lines += ["", f"Stage 1: {cfg['samples']:,} samples x {cfg['epochs']:g} epoch(s) at {cfg['mfu']:.0%} MFU of "
              f"{cfg['peak_tflops']:g} TFLOP/s per GPU"]
    for name, t in plan["stage1"].items():
        label = "with AC" if name == "checkpointed" else "without AC"
        lines.append(f"  {label:<11} {t['flops_per_sample'] / 1e12:8.2f} TFLOP per sample  "
                     f"{t['samples_per_s']:8.1f} samples/s  {_duration(t['hours'])}")
    d, e = plan["data"], plan["data"]["epoch"]
    lines += ["", f"data: {d['shards']} shards of <= {d['samples_per_shard']} for {d['readers']} readers "
              f"(ranks x loader workers): {d['advice']}",
              f"  one resampled epoch at {d['batch_size']} per rank (the loader's dealing, simulated): "
              f"{e['read']:,} reads of {e['samples']:,} samples, {e['distinct']:,} distinct "
              f"({e['missed']:,} missed, {e['repeats']:,} repeats), {e['min_rank_batches']}-"
              f"{e['max_rank_batches']} batches per rank"]
    return "\n".join(lines)


def _fits(row: dict[str, Any]) -> str:
    if not row["max_micro_batch"]:
        return "-"
    return f"{row['max_micro_batch']}" + (f" ({row['micro_batch']})" if row["micro_batch"] != row["max_micro_batch"]
                                          else "")


def _duration(hours: float) -> str:
    return f"{hours:8.1f} h" if hours >= 1 else f"{hours * 60:8.1f} min"


def _micro_batch(fits: int, global_batch: int, world: int) -> int:
    """The largest micro-batch <= ``fits`` that divides the global batch over ``world`` ranks (0: none)."""
    for micro in range(min(fits, global_batch // world), 0, -1):
        if global_batch % (micro * world) == 0:
            return micro
    return 0


def _deepspeed_estimate(facts: ModelFacts, cfg: PlanConfig) -> float:
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    _, gpu, _ = estimate_zero3_model_states_mem_needs(
        facts.trainable + facts.frozen, facts.largest_module, num_gpus_per_node=cfg.gpus, num_nodes=cfg.nodes,
        cpu_offload=False)
    return gpu


def _components(model: Any) -> dict[str, dict[str, int]]:
    parts = {"llm": list(model.llm.parameters())}
    for name in ("video", "audio"):
        branch = getattr(model, name)
        if branch is not None:
            named = list(branch.named_parameters())
            parts[f"{name} encoder"] = [p for n, p in named if n.startswith("encoder.")]
            parts[f"{name} adapter"] = [p for n, p in named if not n.startswith("encoder.")]  # pool, projector
    if model.pre_fusion is not None:
        parts["pre-fusion"] = list(model.pre_fusion.parameters())
    return {name: {"params": sum(_numel(p) for p in params),
                   "trainable": sum(_numel(p) for p in params if p.requires_grad)}
            for name, params in parts.items()}


def _decoder_layers(llm: Any) -> Any:
    import torch

    count = llm.config.get_text_config().num_hidden_layers
    for module in llm.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise ValueError(f"{type(llm).__name__}: no list of {count} decoder layers found")


def _decoder_forward(llm: Any, seq: int) -> None:
    """Forward of the LLM's decoder stack alone, without autograd: what activation checkpointing recomputes."""
    import torch

    embeds = torch.zeros(1, seq, llm.config.get_text_config().hidden_size, device="meta",
                         dtype=next(llm.parameters()).dtype)
    with torch.no_grad():
        llm.base_model(inputs_embeds=embeds, attention_mask=torch.ones(1, seq, dtype=torch.long, device="meta"),
                       use_cache=False)


def _fake_batch(model: Any, seq: int) -> dict[str, Any]:
    """One training sample's inputs, shaped as the collator makes them (values do not matter on meta)."""
    import torch

    cfg = model.config
    meta = {"device": "meta"}
    batch = {"input_ids": torch.zeros(1, seq, dtype=torch.long, **meta),
             "attention_mask": torch.ones(1, seq, dtype=torch.long, **meta)}
    if model.video is not None:
        size = model.video.encoder.model.config.image_size  # frames packed at the tower's input size
        batch["frames"] = torch.zeros(1, cfg.num_frames, size, size, 3, dtype=torch.uint8, **meta)
        batch["has_video"] = torch.ones(1, dtype=torch.bool, **meta)
    if model.audio is not None:
        samples = int(cfg.sample_rate * cfg.max_audio_seconds)  # Whisper pads or cuts it to its window
        batch["audio"] = torch.zeros(1, samples, **meta)
        batch["audio_lengths"] = torch.full((1,), samples, dtype=torch.long, **meta)
        batch["has_audio"] = torch.ones(1, dtype=torch.bool, **meta)
    return batch


def _itemsize(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else 4


def _numel(p: Any) -> int:
    return getattr(p, "ds_numel", p.numel())
