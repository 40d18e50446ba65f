"""`affectgpt shards verify` over many shards: one thread (the baseline) against --workers threads, on a shard
directory made here (--shards shards of --samples small samples each, written with the pack job's writer).

  python benchmarks/verify_throughput.py [--shards 5000] [--samples 4] [--workers 1 4 8]

Both runs read the same files; the first pass also warms the page cache, so the baseline is timed after one
untimed pass. On local disk the cost is the tar parsing (Python, under the GIL) and sha256 (outside it); on an
object store each shard read also waits on the network, which threads overlap.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_shards(out: Path, shards: int, samples: int) -> None:
    from shards.index import Index, write_index
    from shards.schema import PackConfig, encode_sample, tar_key
    from shards.writer import ShardWriter

    cfg = PackConfig(frames=2, size=32, max_audio_seconds=1.0, samples_per_shard=samples)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    audio = (rng.standard_normal(16000) * 0.1).astype(np.float32)
    infos = []
    for s in range(shards):
        with ShardWriter(str(out), f"coarse-{s:06d}.tar") as writer:
            for i in range(samples):
                name = f"clip_{s:06d}_{i}"
                fields = {"name": name, "subtitle": "hello", "description": "calm.", "labels": ["calm"],
                          "split": "coarse", "source": {"video": f"{name}.mp4", "row": s * samples + i,
                                                         "duration": 1.0}}
                writer.add(tar_key(name), encode_sample(fields, frames, audio, cfg))
        infos.append(writer.info)
    write_index(str(out), Index(split="coarse", config=cfg, shards=infos, no_audio=0, quarantined=0))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=int, default=5000)
    p.add_argument("--samples", type=int, default=4, help="samples per shard")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    args = p.parse_args()
    from shards.verify import verify

    tmp = Path(tempfile.mkdtemp(prefix="verify-bench-"))
    try:
        start = time.perf_counter()
        make_shards(tmp, args.shards, args.samples)
        size = sum(f.stat().st_size for f in tmp.glob("*.tar"))
        print(f"made {args.shards} shards x {args.samples} samples ({size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - start:.1f} s")
        verify(str(tmp), workers=max(args.workers))  # warm the page cache: every timed run reads from memory
        times = {}
        for workers in args.workers:
            start = time.perf_counter()
            _, problems = verify(str(tmp), workers=workers)
            times[workers] = time.perf_counter() - start
            assert not problems, problems[:3]
            print(f"verify, {workers} thread(s): {times[workers]:.2f} s ({args.shards / times[workers]:.0f} shards/s)"
                  + (f", {times[args.workers[0]] / times[workers]:.2f}x the {args.workers[0]}-thread run"
                     if workers != args.workers[0] else ""))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
