"""Ray job: pack splits of a corpus into WebDataset shards (decode once, train many times).

  ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
      python -m ray_jobs.pack --corpus /data/emer --split coarse --out /data/shards/coarse \\
      [--samples-per-shard 256] [--frames 8] [--size 224] [--readers 256] [--config FILE] [pack.seed=1 ...]

Several splits in one job (one submission, one driver: ~10 s less per split on a small corpus) take an --out
template: --split fine --split val --split test --out /data/shards/{split}. They are packed one after the
other; the first split that cannot finish stops the job.

--corpus and --out must be absolute paths (or, for --out, an fsspec URL such as s3://bucket/shards/coarse):
under `--working-dir` the job runs in an uploaded copy of the project, where relative paths lead nowhere.
On a multi-node cluster both must be visible to every node (shared filesystem or object store).

Parallelism: one Ray task (1 CPU) per shard. A shard is the unit of atomic writing, of resuming and of
verification, so mapping it to a task keeps all three simple: a task decodes its clips, writes its shard
under a temporary name, renames it and leaves a done-marker. Ray Data's ``write_webdataset`` was not used:
it names files after its own blocks, whose boundaries are not reproducible, and has no per-file resume or
hashes. The plan (which clip goes to which shard) is made on the driver from the CSV alone, so a resubmitted
job plans the same shards, keeps those already written and verified (size + sha256), and redoes the rest.

Quarantine: rows that cannot be packed (see ``affectgpt.packing``) are listed in OUT/quarantine.csv and the
summary prints ``in = packed + quarantined``. Clips without an audio track are kept, flagged ``has_audio``
false.

Exit codes: 0 every row packed; 3 finished and valid, but rows were quarantined; 1 the job could not finish
(the error says why; OUT has no index.json). Through `ray job submit`, any non-zero code marks the job
FAILED and makes `ray job submit` exit 1; `ray job logs` shows the summary and the code.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Iterator
from pathlib import Path

from affectgpt.config import add_config_arguments, config_from_args
from affectgpt.corpus import CorpusError
from affectgpt.packing import PackError, PackJobConfig, ShardPlan, ShardResult, pack_shard, pack_split
from shards.index import QUARANTINE_FILE
from shards.loader import SHARDS_PER_READER, shard_advice
from shards.schema import PackConfig

log = logging.getLogger("ray_jobs.pack")

EXIT_OK, EXIT_FAILED, EXIT_QUARANTINED = 0, 1, 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ray_jobs.pack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p, PackJobConfig)
    return p.parse_args(argv)


def ray_shards(plans: list[ShardPlan], split: str, cfg: PackConfig, out: str) -> Iterator[tuple[ShardPlan,
                                                                                                  ShardResult]]:
    """``pack_shard`` as one Ray task (1 CPU) per shard, yielding results as the tasks finish."""
    import ray

    if not ray.is_initialized():  # once per job, whatever the number of splits
        ray.init()  # inside `ray job submit` this joins the cluster named by RAY_ADDRESS
    task = ray.remote(num_cpus=1)(pack_shard)
    pending = {task.remote(plan, split, cfg, out): plan for plan in plans}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        yield pending.pop(done[0]), ray.get(done[0])


def run(cfg: PackJobConfig) -> int:
    if not cfg.corpus.is_absolute() or ("://" not in cfg.out and not Path(cfg.out).is_absolute()):
        log.error("corpus and out must be absolute (the job runs in a copy of the working dir); got "
                  "corpus %s, out %s", cfg.corpus, cfg.out)
        return EXIT_FAILED
    code = EXIT_OK
    for split in cfg.split:
        out = cfg.out_of(split)
        report = pack_split(cfg.corpus, split, out, cfg.pack, run_shards=ray_shards)
        log_shard_advice(report.clips, cfg.pack.samples_per_shard, cfg.readers)
        for q in report.quarantined[:20]:
            log.warning("quarantined %s (row %d): %s", q.name, q.row, q.reason)
        print("\n".join(report.summary()))
        if report.index.quarantined:
            print(f"quarantine list: {out.rstrip('/')}/{QUARANTINE_FILE} (exit code {EXIT_QUARANTINED})")
            code = EXIT_QUARANTINED
    return code


def log_shard_advice(samples: int, samples_per_shard: int, readers: int) -> None:
    """Readers are dealt whole shards: say whether this layout feeds a cluster's loader readers."""
    if readers:
        advice = shard_advice(samples, samples_per_shard, readers)
        log.info("for %d readers (ranks x loader workers): %s", readers, advice["advice"])
        return
    shards = math.ceil(samples / samples_per_shard)
    log.info("%d shards feed up to %d readers (ranks x loader workers) exactly once and %d evenly in training; "
             "--readers N advises a --samples-per-shard for a cluster", shards, shards, shards // SHARDS_PER_READER)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    args = parse_args(argv)
    try:
        return run(config_from_args(PackJobConfig, args))
    except (CorpusError, PackError, ValueError) as e:
        log.error("%s", e)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
