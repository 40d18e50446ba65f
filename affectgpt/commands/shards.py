"""Check or describe a shard directory written by the pack job (`python -m ray_jobs.pack`).

  affectgpt shards verify DIR    re-hash every shard and re-count its samples against index.json, check every
                                 sample's digests; exit 1 and name the shard (and sample) on any mismatch
  affectgpt shards inspect DIR   print the index summary and the first samples (name, labels, shapes)

DIR may be a local directory or an fsspec URL (s3://bucket/prefix).
"""

from __future__ import annotations

import argparse
import logging

HELP = "verify or inspect a shard directory"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["verify", "inspect"], help="what to do")
    p.add_argument("dir", help="shard directory or URL (holding index.json)")
    p.add_argument("--samples", type=int, default=3, help="inspect: samples to show (default: 3)")
    p.add_argument("--workers", type=int,
                   help="verify: shards checked side by side by threads (default: 8 for a URL, where reads wait on "
                        "the network; 1 for a local directory, where tar parsing holds the GIL and threads only "
                        "add contention: benchmarks/verify_throughput.py)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from shards.index import ShardIndexError, read_index

    try:
        index = read_index(args.dir)
    except ShardIndexError as e:
        log.error("%s", e)
        return 1
    print(f"{args.dir}: split {index.split}, schema v{index.schema_version}, {len(index.shards)} shards, "
          f"{index.samples} samples ({index.no_audio} without audio), {index.bytes / 1e6:.1f} MB, "
          f"{index.quarantined} quarantined; config {index.config}")
    if args.action == "inspect":
        return _inspect(args.dir, args.samples)

    from shards.verify import verify

    workers = args.workers or (8 if "://" in args.dir else 1)
    with tqdm(total=index.bytes, unit="B", unit_scale=True, desc="verify") as bar:
        _, problems = verify(args.dir, progress=lambda shard: bar.update(shard.bytes), workers=workers)
    for problem in problems:
        log.error("%s", problem)
    print(f"verify: {len(index.shards)} shards, {len(problems)} problem(s)")
    return 1 if problems else 0


def _inspect(directory: str, count: int) -> int:
    from shards.loader import ShardLoader

    loader = ShardLoader(directory, batch_size=1, resampled=False)
    for shown, (sample,) in enumerate(loader):
        if shown == count:
            break
        print(f"{sample['name']}: labels={sample['labels']} frames={sample['frames'].shape} "
              f"audio={sample['audio'].shape[0] / loader.config.sample_rate:.2f}s has_audio={sample['has_audio']} "
              f"subtitle={sample['subtitle'][:60]!r}")
    return 0
