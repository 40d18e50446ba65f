"""What checkpoint digests cost: save and resume time of a real DeepSpeed checkpoint with and without them.

  python benchmarks/checkpoint_digests.py [--params 50e6] [--strategy zero3] [--repeats 3]

One process (world size 1, DeepSpeed on CPU or one GPU) trains a stack of linear layers with torch AdamW, as
training does, then times the pieces of ``CheckpointManager.save`` and of a resume:

- save without digests: ``engine.save_checkpoint`` + the trainer state (what a checkpoint costs anyway);
- digests: ``write_manifest`` (hashes every file; the size-only manifest it replaced cost nothing measurable);
- load without digests: ``engine.load_checkpoint``;
- verify: ``validate`` (re-reads and hashes every file before anything is unpickled).

The files are read back from the page cache just after they were written (the common case on resume after a
crash of the training job; from a cold cache the verify pass reads the files from disk once more).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from affectgpt.net import free_port

log = logging.getLogger("benchmarks.checkpoint_digests")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=float, default=50e6, help="trainable parameters (fp32 + AdamW state: 16 B each)")
    p.add_argument("--strategy", choices=["zero3", "zero2", "ddp"], default="zero3")
    p.add_argument("--repeats", type=int, default=3, help="timed saves and loads (medians are printed)")
    p.add_argument("--dir", type=Path, default=None, help="where to write the checkpoints (default: a temp dir)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0",
                       "LOCAL_RANK": "0", "WORLD_SIZE": "1"}.items():
        os.environ.setdefault(key, value)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        rows = measure(args, Path(tmp))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def measure(args: argparse.Namespace, root: Path) -> list[tuple[str, str]]:
    import deepspeed
    import torch

    from affectgpt.train.checkpoint import CheckpointManager, tag_for, validate, write_manifest, write_trainer_state
    from affectgpt.train.session import _skip_unused_cpu_comm_build

    _skip_unused_cpu_comm_build(deepspeed.accelerator.get_accelerator().device_name())
    deepspeed.init_distributed()
    width = 1024
    layers = max(1, round(args.params / (width * width + width)))
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
    stage = {"zero3": 3, "zero2": 2, "ddp": 0}[args.strategy]
    config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": stage},
              "zero_allow_untested_optimizer": True}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    x = torch.randn(1, width, device=engine.device)
    engine.backward(engine(x).float().pow(2).mean())
    engine.step()  # creates the optimizer state that a checkpoint carries

    manager = CheckpointManager(root, keep_last=1, rank=0, world_size=1, barrier=lambda: None)
    meta = {"step": 0, "world_size": 1, "strategy": args.strategy}
    save, digest, load, verify = [], [], [], []
    for i in range(args.repeats):
        tag_dir = root / tag_for(i + 1)
        t0 = time.perf_counter()
        engine.save_checkpoint(str(root), tag=tag_dir.name, save_latest=False)
        write_trainer_state(tag_dir, 0, {"step": i + 1})
        t1 = time.perf_counter()
        write_manifest(tag_dir, meta)
        t2 = time.perf_counter()
        engine.load_checkpoint(str(root), tag=tag_dir.name)
        t3 = time.perf_counter()
        validate(tag_dir)
        t4 = time.perf_counter()
        save.append(t1 - t0)
        digest.append(t2 - t1)
        load.append(t3 - t2)
        verify.append(t4 - t3)
    size = sum(p.stat().st_size for p in (root / tag_for(args.repeats)).rglob("*") if p.is_file())
    manager.save(engine, args.repeats + 1, {"step": args.repeats + 1}, meta)  # the product path runs end to end
    med = statistics.median
    return [
        ("checkpoint", f"{args.strategy}, {layers} x Linear({width}, {width}), {size / 1e6:.0f} MB on disk"),
        ("save without digests (s)", f"{med(save):.3f}"),
        ("digests at save (s)", f"{med(digest):.3f}  ({size / med(digest) / 1e9:.2f} GB/s)"),
        ("save with / without", f"{(med(save) + med(digest)) / med(save):.2f}x"),
        ("load without digests (s)", f"{med(load):.3f}"),
        ("verify at load (s)", f"{med(verify):.3f}  ({size / med(verify) / 1e9:.2f} GB/s)"),
        ("load with / without", f"{(med(load) + med(verify)) / med(load):.2f}x"),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
