"""What the per-sample shard digests cost: the hash candidates on real samples, and the loader with and without
the check.

  .venv/bin/python benchmarks/shard_digests.py [--corpus DIR] [--num 160] [--workers 2] [--rounds 3]

Measured in this one script, on shards packed from the same clips (synthesized into work/bench/ unless --corpus
is given; 8 frames of 224x224 and 3 s of audio per clip, the pack job's defaults):
  hashes   xxh3_64 (the schema's choice), zlib.crc32 and blake2b-128 over every member of every sample, in MB/s
           and microseconds per sample, next to ``decode_sample``'s time per sample
  loader   ``ShardLoader`` samples/s by the wall clock, with the digest check (what training runs) and with
           ``check_sample`` replaced by a no-op, 0 and ``--workers`` workers; the two alternate ``--rounds``
           times and the best round of each counts (the machine may be shared)
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import time
import zlib
from pathlib import Path
from unittest import mock

import xxhash

from affectgpt.packing import pack_split
from affectgpt.synth.corpus_writer import SynthConfig, write_corpus
from shards import schema
from shards.loader import ShardLoader, _read_shard

HASHES = {
    "xxh3_64": lambda data: xxhash.xxh3_64_intdigest(data),
    "crc32 (zlib)": lambda data: zlib.crc32(data),
    "blake2b-128": lambda data: hashlib.blake2b(data, digest_size=16).digest(),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, help="existing corpus (default: synthesize one)")
    p.add_argument("--num", type=int, default=160, help="clips to synthesize (default: 160)")
    p.add_argument("--workers", type=int, default=2, help="loader workers (default: 2)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per loader setting (default: 3)")
    p.add_argument("--work", type=Path, default=Path("work/bench"), help="scratch dir (default: work/bench)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    corpus = args.corpus or args.work / f"corpus-{args.num}"
    if args.corpus is None:
        write_corpus(SynthConfig(out=corpus, num=args.num, fine_fraction=0, test_fraction=0, workers=2))
    cfg = schema.PackConfig(samples_per_shard=32)
    out = str((args.work / f"shards-v{schema.SCHEMA_VERSION}-{corpus.name}").resolve())
    index = pack_split(corpus, "coarse", out, cfg, progress=False).index
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {index.samples} samples, "
          f"{index.bytes / index.samples / 1e3:.0f} KB each")

    samples = [{k: v for k, v in raw.items() if not k.startswith("__")}
               for s in index.shards for raw in _read_shard(f"{out}/{s.file}", s.samples, "fail")]
    nbytes = sum(len(v) for members in samples for v in members.values())
    start = time.perf_counter()
    for members in samples:
        schema.decode_sample(members, cfg, "bench")
    decode_us = (time.perf_counter() - start) / len(samples) * 1e6
    print(f"decode_sample (digest check included): {decode_us:7.0f} us/sample")
    for name, digest in HASHES.items():
        start = time.perf_counter()
        for members in samples:
            for data in members.values():
                digest(data)
        seconds = time.perf_counter() - start
        print(f"hash {name:13s} {nbytes / seconds / 1e6:8.0f} MB/s {seconds / len(samples) * 1e6:7.1f} us/sample "
              f"= {seconds / len(samples) * 1e6 / decode_us:6.1%} of decode_sample")

    for workers in sorted({0, args.workers}):
        best = {"with check": 0.0, "without": 0.0}
        for _ in range(args.rounds):
            for label in best:
                best[label] = max(best[label], _loader_rate(out, workers, check=label == "with check"))
        print(f"loader, {workers} workers: with check {best['with check']:7.1f} samples/s, without "
              f"{best['without']:7.1f} samples/s, ratio {best['with check'] / best['without']:.3f}")


def _loader_rate(out: str, workers: int, check: bool) -> float:
    """Samples/s of one exact-coverage epoch (worker start-up included)."""
    with mock.patch.object(schema, "check_sample", schema.check_sample if check else lambda members, where: None):
        loader = ShardLoader(out, batch_size=8, num_workers=workers, resampled=False)
        start = time.perf_counter()
        count = sum(len(batch) for batch in loader)
        return count / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
