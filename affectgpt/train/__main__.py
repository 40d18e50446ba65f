"""Training entry point, run once per rank by ``deepspeed`` or ``torchrun``.

  deepspeed --num_gpus 2 --module affectgpt.train --config configs/stage1.yaml [key=value ...]
  torchrun --nproc_per_node 2 -m affectgpt.train --config configs/stage1.yaml [key=value ...]

(``launcher/train.py`` is the same entry point as a script path.) Rank, world size and the rendezvous come from
the environment both launchers set. Rerunning the same command resumes from the checkpoint dir's ``latest``.
Exit codes: 0 finished; 143 stopped by SIGTERM after writing a checkpoint (rerun to continue); 1 failed. See
launcher/README.md for multi-node launches.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m affectgpt.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="training YAML (configs/stage1.yaml)")
    # The deepspeed launcher passes --local_rank; LOCAL_RANK in the environment says the same.
    p.add_argument("--local_rank", type=int, default=-1, help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. max_steps=50")
    args = p.parse_args(argv)
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")

    from affectgpt.config import load_config
    from affectgpt.train.components import AffectGPTJob
    from affectgpt.train.config import TrainConfig
    from affectgpt.train.session import run

    cfg = load_config(TrainConfig, args.config, args.overrides)
    return run(cfg, AffectGPTJob(cfg))


if __name__ == "__main__":
    sys.exit(main())
