"""The demo's training step through the real launcher: CPU-seconds and wall seconds per optimizer step, with
DeepSpeed's bucket and persistence settings as transformers' rule gives them (the baseline) and as
``affectgpt.train.ds_config`` fills them now (floors for small models), at the demo's micro-batch and at one
micro-batch per rank and step.

  python benchmarks/demo_training.py --shards work/demo/shards/coarse [--recipe configs/models/llama-tiny.yaml]

Each variant runs ``deepspeed --num_gpus 2 launcher/train.py --config configs/stage1.yaml`` twice, for
``--short`` and ``--long`` steps, exactly as the study does; the difference of the two runs is the cost of the
extra steps without start-up. CPU time is the whole process tree's (launcher, ranks, loader workers:
``RUSAGE_CHILDREN``), so the figure holds on a machine other jobs load, where wall time does not.
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


def transformers_rule(hidden: int) -> dict:
    """zero3.json with the values transformers' DeepSpeed integration derives from the hidden size alone."""
    from affectgpt.train.ds_config import TEMPLATE_DIR, load_template

    template = load_template(TEMPLATE_DIR / "zero3.json")
    template["zero_optimization"].update(
        reduce_bucket_size=hidden * hidden, stage3_prefetch_bucket_size=int(0.9 * hidden * hidden),
        stage3_param_persistence_threshold=10 * hidden)
    return template


def run(args: argparse.Namespace, steps: int, overrides: list[str], out: Path) -> tuple[float, float]:
    """(CPU seconds of the whole process tree, wall seconds) of one training run."""
    cmd = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()),
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
        variants = {
            "baseline: transformers' rule, micro 2": [f"dist.deepspeed_config={baseline}"],
            "floors, micro 2": [],
            "floors, micro 8 (one pass per rank)": ["micro_batch_size=8"],
        }
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


if __name__ == "__main__":
    sys.exit(main())
