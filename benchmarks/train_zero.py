"""ZeRO-3 vs ZeRO-2 vs DDP at 2 ranks on one model and one batch: step time, samples/s, peak memory and
model-state memory per rank, MFU over the matmul peak measured in this script; ratios printed against DDP, and
the measured model states against the capacity planner's prediction (``affectgpt plan``'s memory model).
The training features (``--variants``) are measured the same way under ZeRO-3, against its padded run:
``packed`` (data.packed: tokens/s and the padding it saves), ``packed-budget`` (packed with
data.max_tokens_per_batch: the micro-batch cut into rows of at most ``--max-tokens`` tokens, forwarded one after
the other),
``checkpointing`` (model.activation_checkpointing: activations saved for the backward and step time) and
``lora`` (finetune=lora: trainable parameters, step time).

  python benchmarks/train_zero.py [--recipe configs/models/smollm2-135m.yaml] [--zoo models] [--steps 4]
  python benchmarks/train_zero.py --strategies zero3 --variants padded packed checkpointing lora
  python benchmarks/train_zero.py --strategies zero3 --variants padded packed packed-budget --micro 4 [--max-tokens N]
  python benchmarks/train_zero.py --startup      # also: DeepSpeed start-up with and without the shm op build

The driver measures the fp32 (CPU) / bf16 (GPU) matmul peak of the whole machine, then launches
``deepspeed --num_gpus 2`` once per strategy in worker mode. Workers build AffectGPT exactly as training does
(``AffectGPTJob``), train on one fixed synthetic batch (no data loading in the timings), and write per-rank
JSON. Model-state memory = bytes of every distinct tensor storage held by parameters, gradients and the
optimizer (ZeRO partitions and flat buffers included), measured after a backward, when gradients exist.
Saved activations = the peak over one micro-batch's step of the bytes of the distinct storages autograd keeps
for the backward (one row's, with a token budget: each row's are freed by its backward before the next row).
The batch's descriptions differ in length (1 to 4 sentences), so padding is what a real batch has. Every
variant runs the training loop's own micro-step (``session.budgeted_rows`` + ``forward_backward``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from affectgpt.net import free_port

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("benchmarks.train_zero")
STRATEGIES = ("zero3", "zero2", "ddp")
SENTENCE = ("The person raises their eyebrows and speaks quickly with a rising pitch; the words express "
            "astonishment, so the emotional state is surprise.")
# The config keys each variant sets over the padded, full-parameter, fp32 (CPU) run.
VARIANTS = {
    "padded": [],
    "packed": ["data.packed=true"],
    "packed-budget": ["data.packed=true"],  # + data.max_tokens_per_batch=--max-tokens (default: the longest sample)
    "checkpointing": ["model.activation_checkpointing=true"],
    "lora": ["finetune=lora"],
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=Path, default=ROOT / "configs" / "models" / "smollm2-135m.yaml")
    p.add_argument("--zoo", type=Path, default=ROOT / "models", help="where the recipe's models/... paths live")
    p.add_argument("--steps", type=int, default=4, help="timed steps per strategy (after 2 warm-up steps)")
    p.add_argument("--micro", type=int, default=2, help="samples per rank per step")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="the packed-budget variant's data.max_tokens_per_batch (default: the batch's longest "
                        "sample, the tightest budget that fits)")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--variants", nargs="+", default=["padded"], choices=list(VARIANTS),
                   help="training features to measure (other than padded: under zero3 only)")
    p.add_argument("--startup", action="store_true", help="also time DeepSpeed start-up with/without the shm op")
    p.add_argument("--worker", choices=STRATEGIES, help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=list(VARIANTS), default="padded", help=argparse.SUPPRESS)
    p.add_argument("--worker-startup", choices=["skip", "build"], help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--local_rank", type=int, default=-1, help=argparse.SUPPRESS)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.worker_startup:
        return startup_worker(args)
    if args.worker:
        return worker(args)
    return driver(args)


# ---------------------------------------------------------------- driver

def driver(args: argparse.Namespace) -> int:
    import torch

    from affectgpt.train.flops import matmul_peak_flops

    recipe = resolve_recipe(args.recipe, args.zoo)
    gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if gpu else torch.float32
    if not gpu:
        torch.set_num_threads(os.cpu_count() or 1)
    def measure_peak() -> float:
        return matmul_peak_flops("cuda" if gpu else "cpu", dtype, min_seconds=2.0) * (
            torch.cuda.device_count() if gpu else 1)

    peaks = [measure_peak()]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(s, "padded") for s in args.strategies if "padded" in args.variants]
        runs += [("zero3", v) for v in args.variants if v != "padded"]
        for strategy, variant in runs:
            name = strategy if variant == "padded" else f"{strategy}/{variant}"
            out = Path(tmp) / name.replace("/", "-")
            out.mkdir()
            cmd = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()),
                   __file__, "--worker", strategy, "--variant", variant, "--recipe", str(recipe),
                   "--steps", str(args.steps), "--micro", str(args.micro), "--out", str(out),
                   *(["--max-tokens", str(args.max_tokens)] if args.max_tokens else [])]
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // 2))}
            log.info("%s: %s", name, " ".join(cmd))
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                log.error("%s failed:\n%s", name, (proc.stdout + proc.stderr)[-4000:])
                return 1
            results[name] = [json.loads(f.read_text()) for f in sorted(out.glob("rank*.json"))]
    # On shared cores other jobs depress any one measurement: the best of before and after is the peak.
    peaks.append(measure_peak())
    peak = max(peaks)
    print(f"machine matmul peak ({'all GPUs' if gpu else f'{os.cpu_count()} CPU threads'}, "
          f"{str(dtype).removeprefix('torch.')}): {peak / 1e9:.1f} GFLOP/s (before {peaks[0] / 1e9:.1f}, "
          f"after {peaks[1] / 1e9:.1f})")
    report(results, peak)
    if args.startup:
        startup(args)
    return 0


def report(results: dict[str, list[dict]], peak: float) -> None:
    from affectgpt.train.plan import model_state_bytes

    rows = {}
    for name, ranks in results.items():
        step = max(r["step_time_s"] for r in ranks)
        r0 = ranks[0]
        predicted = model_state_bytes(r0["strategy"], r0["trainable"], r0["params"] - r0["trainable"],
                                      r0["param_bytes"], r0["world_size"])
        rows[name] = {
            "predicted_model_state_mb": predicted / 2**20,
            "step_s": step,
            "samples_s": sum(r["samples"] for r in ranks) / step,
            "tokens_s": sum(r["tokens"] for r in ranks) / step,
            "padding": 1 - sum(r["tokens"] for r in ranks) / sum(r["row_tokens"] for r in ranks),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in ranks),
            "model_state_mb": max(r["model_state_mb"] for r in ranks),
            "activations_mb": max(r["activations_mb"] for r in ranks),
            "trainable": ranks[0]["trainable"],
            "mfu": sum(r["flops_per_step"] for r in ranks) / step / peak,
            "rows": ranks[0]["rows"],  # forward passes per rank per step (the same on every rank)
            "budget": ranks[0]["budget"],
        }
    print(f"\n{'run':20} {'step s':>8} {'samples/s':>10} {'tokens/s':>9} {'padding':>8} {'peak RSS MB':>12} "
          f"{'states MB':>10} {'activations MB':>15} {'trainable':>10} {'MFU':>7} {'rows':>5}   (per rank)")
    for s, r in rows.items():
        print(f"{s:20} {r['step_s']:8.3f} {r['samples_s']:10.2f} {r['tokens_s']:9.0f} {r['padding']:8.1%} "
              f"{r['peak_rss_mb']:12.0f} {r['model_state_mb']:10.1f} {r['activations_mb']:15.1f} "
              f"{r['trainable']:10,d} {r['mfu']:7.2%} {r['rows']:5d}")
    if "zero3/packed-budget" in rows:
        print(f"\nzero3/packed-budget: data.max_tokens_per_batch={rows['zero3/packed-budget']['budget']}")
    print("\nmodel states per rank, measured / predicted by affectgpt.train.plan:")
    for s, r in rows.items():
        print(f"  {s}: {r['model_state_mb']:.1f} MB / {r['predicted_model_state_mb']:.1f} MB = "
              f"{r['model_state_mb'] / r['predicted_model_state_mb']:.3f}")
    if "ddp" in rows:
        base = rows["ddp"]
        print("\nratios vs DDP (ZeRO / DDP):")
        for s, r in rows.items():
            if s in STRATEGIES and s != "ddp":
                print(f"  {s}: step time {r['step_s'] / base['step_s']:.2f}x, "
                      f"samples/s {r['samples_s'] / base['samples_s']:.2f}x, "
                      f"peak RSS {r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x, "
                      f"model states {r['model_state_mb'] / base['model_state_mb']:.2f}x")
    if "zero3" in rows and any("/" in s for s in rows):
        base = rows["zero3"]
        print("\nratios vs zero3 padded, full fine-tuning:")
        for s, r in rows.items():
            if "/" in s:
                print(f"  {s}: step time {r['step_s'] / base['step_s']:.2f}x, "
                      f"tokens/s {r['tokens_s'] / base['tokens_s']:.2f}x, "
                      f"saved activations {r['activations_mb'] / base['activations_mb']:.2f}x, "
                      f"peak RSS {r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x, "
                      f"trainable parameters {r['trainable'] / base['trainable']:.3f}x, "
                      f"padding {base['padding']:.1%} -> {r['padding']:.1%}")
    if "zero3/packed-budget" in rows and "zero3/packed" in rows:
        base, r = rows["zero3/packed"], rows["zero3/packed-budget"]
        print(f"\nzero3/packed-budget vs zero3/packed (one row per micro-batch): {r['rows']} rows per step, "
              f"step time {r['step_s'] / base['step_s']:.2f}x, tokens/s {r['tokens_s'] / base['tokens_s']:.2f}x, "
              f"peak saved activations {r['activations_mb'] / base['activations_mb']:.2f}x")
    print(json.dumps(rows, indent=1))


def startup(args: argparse.Namespace) -> None:
    """Seconds from launch to an initialised process group on a fresh TORCH_EXTENSIONS_DIR."""
    for mode in ("skip", "build"):
        with tempfile.TemporaryDirectory() as ext:
            cmd = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()),
                   __file__, "--worker-startup", mode]
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "TORCH_EXTENSIONS_DIR": ext},
                                  capture_output=True, text=True)
            took = time.perf_counter() - start
            print(f"start-up with shm op {'skipped' if mode == 'skip' else 'built'} (fresh extensions dir): "
                  f"{took:.1f} s (exit {proc.returncode})")


def startup_worker(args: argparse.Namespace) -> int:
    import deepspeed

    if args.worker_startup == "skip":
        from affectgpt.train.session import _skip_unused_cpu_comm_build

        _skip_unused_cpu_comm_build("cpu")
    deepspeed.init_distributed()
    return 0


def resolve_recipe(recipe: Path, zoo: Path) -> Path:
    """The recipe with its ``models/...`` paths under ``zoo``, building missing zoo entries."""
    import yaml

    from affectgpt.model.zoo import build_zoo

    data = yaml.safe_load(recipe.read_text())
    entries = [data["llm"]] + [data[m]["encoder"] for m in ("video", "audio") if data.get(m)]
    entries = [e.removeprefix("models/") for e in entries]
    build_zoo(zoo, only=entries, seed=0)
    data["llm"] = str(zoo / entries[0])
    for m, entry in zip([m for m in ("video", "audio") if data.get(m)], entries[1:], strict=True):
        data[m]["encoder"] = str(zoo / entry)
    out = Path(tempfile.mkdtemp()) / recipe.name
    out.write_text(yaml.safe_dump(data))
    return out


# ---------------------------------------------------------------- worker

def worker(args: argparse.Namespace) -> int:
    import deepspeed
    import deepspeed.comm as dist
    import torch
    from deepspeed.accelerator import get_accelerator

    from affectgpt.config import load_config
    from affectgpt.model.collator import sample_lengths
    from affectgpt.train.components import AffectGPTJob
    from affectgpt.train.config import TrainConfig
    from affectgpt.train.ds_config import fill, load_template, template_path
    from affectgpt.train.flops import count_flops
    from affectgpt.train.session import (
        _skip_unused_cpu_comm_build,
        budgeted_rows,
        forward_backward,
        input_tokens,
        target_tokens,
    )

    _skip_unused_cpu_comm_build(get_accelerator().device_name())
    deepspeed.init_distributed()
    rank, world = dist.get_rank(), dist.get_world_size()
    gpu = get_accelerator().device_name() != "cpu"
    cfg = load_config(TrainConfig, ROOT / "configs" / "stage1.yaml", [
        f"model.recipe={args.recipe}", f"dist.strategy={args.worker}", f"micro_batch_size={args.micro}",
        f"global_batch_size={args.micro * world}", "optim.lr=1e-5", "data.packed=false", *VARIANTS[args.variant],
    ])
    job = AffectGPTJob(cfg)
    ds_config = fill(load_template(template_path(cfg)), cfg, world_size=world, bf16=gpu, hidden_size=job.hidden_size)
    torch.manual_seed(0)
    model = job.build_model(ds_config).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.optim.lr)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    # Cut on the host, as the training loop does; forward_backward moves each row to the device.
    batch = model.collator(train=True, packed=job.packed)(samples(model.config, args.micro, rank))
    budget = None
    if args.variant == "packed-budget":
        longest = torch.tensor(args.max_tokens or max(sample_lengths(batch)), device=engine.device)
        dist.all_reduce(longest, op=dist.ReduceOp.MAX)
        budget = int(longest.item())
    rows = budgeted_rows([batch], budget, dist, engine.device)[0]
    targets = torch.tensor(float(target_tokens(batch)), device=engine.device)
    dist.all_reduce(targets)

    def step() -> None:
        forward_backward(engine, rows, int(targets.item()), world, last=True)

    with saved_activations() as saved:
        step()  # warm-up step 0, measured for its activations
    warmup, times, state_bytes = 2, [], 0
    engine.step()
    for i in range(1, warmup + args.steps):
        sync(gpu)
        start = time.perf_counter()
        step()
        if i == 1:  # optimizer state exists (after step 0) and gradients exist (after this backward)
            state_bytes = model_state_bytes(engine)
        engine.step()
        sync(gpu)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    _, flops = count_flops(step)
    engine.step()
    result = {
        "rank": rank, "strategy": args.worker, "step_time_s": sum(times) / len(times), "samples": args.micro,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "model_state_mb": state_bytes / 2**20, "flops_per_step": flops,
        "params": sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters()),
        "trainable": sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad),
        "param_bytes": 2 if gpu else 4, "world_size": world,
        "tokens": int(input_tokens(batch)), "row_tokens": batch["input_ids"].numel(),
        "activations_mb": saved["peak_bytes"] / 2**20, "rows": len(rows), "budget": budget,
    }
    (args.out / f"rank{rank}.json").write_text(json.dumps(result))
    return 0


def samples(model_cfg, n: int, rank: int = 0) -> list[dict]:
    """Synthetic samples in the shape of docs/CONTRACTS.md (fixed content: every step sees the same batch);
    descriptions of 1 to 4 sentences, as real ones vary."""
    import numpy as np

    rng = np.random.default_rng(rank)
    size, frames, rate = model_cfg.frame_size, model_cfg.num_frames, model_cfg.sample_rate
    seconds = min(3.0, model_cfg.max_audio_seconds)
    t = np.arange(int(seconds * rate)) / rate
    return [{
        "name": f"bench_{i}", "frames": rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8),
        "audio": (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), "has_audio": True,
        "subtitle": "I really did not expect to see you here today, it is such a surprise.",
        "description": " ".join([SENTENCE] * (1 + (i + rank) % 4)),
        "labels": ["surprise", "happiness"], "split": "bench",
    } for i in range(n)]


class _Saved:
    """A tensor autograd keeps for the backward, counted in ``live`` (storage -> [bytes, references]) for as
    long as autograd holds it: a backward releases what it used."""

    def __init__(self, tensor, live: dict[int, list[int]], out: dict[str, int]):
        self.tensor, self.live, self.out = tensor, live, out
        self.key = tensor.untyped_storage().data_ptr()
        entry = live.setdefault(self.key, [tensor.untyped_storage().nbytes(), 0])
        entry[1] += 1
        out["peak_bytes"] = max(out["peak_bytes"], sum(size for size, _ in live.values()))

    def __del__(self) -> None:
        entry = self.live[self.key]
        entry[1] -= 1
        if not entry[1]:
            del self.live[self.key]


@contextlib.contextmanager
def saved_activations():
    """The peak, inside the block, of the bytes of the distinct tensor storages autograd holds for backward
    passes still to come (parameters, which the model holds anyway, excluded)."""
    import torch

    live: dict[int, list[int]] = {}
    out = {"peak_bytes": 0}

    def pack(t):
        if isinstance(t, torch.nn.Parameter) or not t.untyped_storage().data_ptr():
            return t
        return _Saved(t, live, out)

    def unpack(saved):
        return saved.tensor if isinstance(saved, _Saved) else saved

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield out


def model_state_bytes(engine) -> int:
    """Distinct tensor storage held by parameters (their ZeRO-3 partitions), gradients and the optimizer."""
    import torch

    tensors = []
    for p in engine.module.parameters():
        tensors.append(p.ds_tensor if hasattr(p, "ds_tensor") else p.data)
        if p.grad is not None:
            tensors.append(p.grad)
    seen: set[int] = set()

    def walk(obj, depth: int) -> None:
        if torch.is_tensor(obj):
            tensors.append(obj)
            return
        if depth > 8 or id(obj) in seen or isinstance(obj, torch.nn.Module):
            return
        seen.add(id(obj))
        if isinstance(obj, dict):
            for key, value in obj.items():
                walk(key, depth + 1)
                walk(value, depth + 1)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for item in obj:
                walk(item, depth + 1)
        elif type(obj).__module__.startswith(("deepspeed", "torch.optim")):
            for value in vars(obj).values():
                walk(value, depth + 1)

    walk(engine.optimizer, 0)
    storages = {}
    for t in tensors:
        storage = t.untyped_storage()
        if storage.data_ptr():
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def sync(gpu: bool) -> None:
    if gpu:
        import torch

        torch.cuda.synchronize()


if __name__ == "__main__":
    sys.exit(main())
