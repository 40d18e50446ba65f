"""The demo's training step through the real launcher: CPU-seconds and wall seconds per optimizer step, with
DeepSpeed's bucket and persistence settings as transformers' rule gives them (the baseline) and as
``affectgpt.train.ds_config`` fills them now (floors for small models), at the demo's micro-batch and at one
micro-batch per rank and step, with DeepSpeed's hooks on every module (``dist.gather=module``) and, last, the
default: one hook per transformer block (``dist.gather=block``).

  python benchmarks/demo_training.py --shards work/demo/shards/coarse [--recipe configs/models/llama-tiny.yaml]

Each variant runs ``deepspeed --num_gpus 2 launcher/train.py --config configs/stage1.yaml`` twice, for
``--short`` and ``--long`` steps, exactly as the study does; the difference of the two runs is the cost of the
extra steps without start-up. CPU time is the whole process tree's (launcher, ranks, loader workers:
``RUSAGE_CHILDREN``), so the figure holds on a machine other jobs load, where wall time does not.

``--profile`` runs the first and the last variant under ``py-spy record --subprocesses`` instead and prints
where a step's CPU goes (the same long-minus-short difference of samples, so start-up, imports and the final
checkpoint drop out), sorted into the parts of a ZeRO-3 step by the first matching rule of ``PARTS``.
"""

from __future__ import annotations

import argparse
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
log = logging.getLogger("benchmarks.demo_training")
RATE = 100  # py-spy samples per second per process


def transformers_rule(hidden: int) -> dict:
    """zero3.json with the values transformers' DeepSpeed integration derives from the hidden size alone."""
    from affectgpt.train.ds_config import TEMPLATE_DIR, load_template

    template = load_template(TEMPLATE_DIR / "zero3.json")
    template["zero_optimization"].update(
        reduce_bucket_size=hidden * hidden, stage3_prefetch_bucket_size=int(0.9 * hidden * hidden),
        stage3_param_persistence_threshold=10 * hidden)
    return template


# (part, file fragments, function fragments): a sample belongs to the first part any of whose fragments one of
# its frames matches. Order matters: ZeRO-3 gathers parameters in hooks called from forward and backward, and
# reduces gradients in hooks called from backward, so hooks are tested before forward and backward.
PARTS = (
    ("loader (shards, collate, preprocess)", ("shards/loader.py", "model/collator.py", "torch/utils/data/"), ()),
    ("optimizer step", ("torch/optim/",), ("_optimizer_step",)),
    ("ZeRO-3 parameter gather/release hooks", ("zero/parameter_offload.py", "zero/partitioned_param_coordinator.py",
                                               "zero/partition_parameters.py"), ()),
    ("ZeRO-3 gradient reduce/partition", (), ("reduce_", "partition_grads", "__reduce", "_reduce")),
    ("backward", ("torch/autograd/",), ("backward",)),
    ("forward", (), ("forward",)),
    ("logging, metrics, tracking", ("train/metrics.py", "affectgpt/tracking.py", "logging/"), ()),
)


def part_of(stack: str) -> str:
    frames = stack.split(";")
    for part, files, functions in PARTS:
        for frame in frames:
            function, _, where = frame.rpartition(" (")
            if any(f in where for f in files) or any(f in function for f in functions):
                return part
    return "other (step loop, DeepSpeed engine, Python)"


def profile_parts(raw: Path) -> dict[str, int]:
    """py-spy's raw output (``stack count`` lines) -> samples per part."""
    counts: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        part = part_of(stack)
        counts[part] = counts.get(part, 0) + int(n)
    return counts


def run(args: argparse.Namespace, steps: int, overrides: list[str], out: Path,
        profile: Path | None = None) -> tuple[float, float]:
    """(CPU seconds of the whole process tree, wall seconds) of one training run; with ``profile``, under
    py-spy, writing its raw samples there."""
    spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--subprocesses", "--full-filenames",
           "--format", "raw", "--rate", str(RATE), "--output", str(profile), "--"] if profile else []
    cmd = [*spy, str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()),
           "launcher/train.py", "--config", "configs/stage1.yaml", f"model.recipe={args.recipe}",
           f"data.shards={args.shards}", f"checkpoint.dir={out / 'ckpt'}", f"max_steps={steps}",
           f"checkpoint.every={steps}", "log_every=1000", "optim.lr=3.0e-3", *overrides]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=Path, required=True, help="a packed split (the demo's work/demo/shards/coarse)")
    p.add_argument("--recipe", type=Path, default=ROOT / "configs" / "models" / "llama-tiny.yaml")
    p.add_argument("--short", type=int, default=4, help="steps of the first run of each variant")
    p.add_argument("--long", type=int, default=16, help="steps of the second run of each variant")
    p.add_argument("--profile", action="store_true",
                   help="profile the first and last variant with py-spy: where a step's CPU goes")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from transformers import AutoConfig

    from affectgpt.config import load_config
    from affectgpt.model.config import AffectGPTConfig

    llm = load_config(AffectGPTConfig, args.recipe).llm
    hidden = AutoConfig.from_pretrained(llm).get_text_config().hidden_size
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "zero3-transformers-rule.json"
        baseline.write_text(json.dumps(transformers_rule(hidden)))
        per_module = "dist.gather=module"
        variants = {
            "baseline: transformers' rule, micro 2": [f"dist.deepspeed_config={baseline}", per_module],
            "floors, micro 2": [per_module],
            "floors, micro 8 (one pass per rank)": ["micro_batch_size=8", per_module],
            "floors, micro 8, gather per block": ["micro_batch_size=8", "dist.gather=block"],
        }
        if args.profile:
            first, last = list(variants)[0], list(variants)[-1]
            return print_profile(args, {first: variants[first], last: variants[last]}, Path(tmp))
        for name, overrides in variants.items():
            short = run(args, args.short, overrides, Path(tmp) / f"{len(rows)}s")
            long = run(args, args.long, overrides, Path(tmp) / f"{len(rows)}l")
            extra = args.long - args.short
            cpu, wall = (long[0] - short[0]) / extra, (long[1] - short[1]) / extra
            rows[name] = {"cpu_s_per_step": cpu, "wall_s_per_step": wall, "startup_cpu_s": short[0] - args.short * cpu}
            log.info("%s: %s", name, rows[name])
    base = rows["baseline: transformers' rule, micro 2"]
    print(f"\n{'variant':40} {'CPU s/step':>11} {'wall s/step':>12} {'CPU ratio':>10} {'wall ratio':>11}")
    for name, r in rows.items():
        cpu, wall = r["cpu_s_per_step"], r["wall_s_per_step"]
        print(f"{name:40} {cpu:11.3f} {wall:12.3f} {base['cpu_s_per_step'] / cpu:9.2f}x "
              f"{base['wall_s_per_step'] / wall:10.2f}x")
    print(f"(global batch 16 on 2 ranks; hidden size {hidden}; load average {os.getloadavg()[0]:.1f} at the end)")
    print(json.dumps(rows, indent=1))
    return 0


def print_profile(args: argparse.Namespace, variants: dict[str, list[str]], tmp: Path) -> int:
    """Per-step CPU seconds of each part of the step (both ranks together), for each variant."""
    table = {}
    for i, (name, overrides) in enumerate(variants.items()):
        counts = []
        for steps in (args.short, args.long):
            raw = tmp / f"profile-{i}-{steps}.txt"
            run(args, steps, overrides, tmp / f"p{i}-{steps}", profile=raw)
            counts.append(profile_parts(raw))
        extra = args.long - args.short
        table[name] = {part: (counts[1].get(part, 0) - counts[0].get(part, 0)) / extra / RATE
                       for part in set(counts[0]) | set(counts[1])}
    parts = sorted({p for row in table.values() for p in row}, key=lambda p: -table[next(iter(table))].get(p, 0))
    names = list(table)
    print(f"\nCPU s per step by part (py-spy, both ranks; {args.long} - {args.short} steps)")
    print(f"{'part':46}" + "".join(f" {n[:28]:>28}" for n in names))
    for part in parts + ["total"]:
        cells = []
        for n in names:
            total = sum(table[n].values())
            value = total if part == "total" else table[n].get(part, 0.0)
            cells.append(f"{value:8.3f} s ({100 * value / total:5.1f}%)" if total > 0 else f"{'-':>19}")
        print(f"{part:46}" + "".join(f" {c:>28}" for c in cells))
    print(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
