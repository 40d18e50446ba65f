"""The pack job's driver at corpus scale, without decoding: read and check a 1M-row corpus CSV, plan the shards,
prepare the output, write quarantine.csv and index.json (from the results the shard tasks would return), and
read the index back as the loader does. Time of each phase and the driver's peak memory (RSS), at --rows and at a
tenth of it in the same script (the ratio shows how both scale).

  python benchmarks/pack_planning.py [--rows 1000000] [--samples-per-shard 256] [--dir /tmp]

Planning needs every video to exist (the CSV check) and its size (the shard digest), not its content: the
corpus's videos are symbolic links to one small file. Each size runs in a fresh process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_corpus(root: Path, rows: int) -> None:
    videos = root / "videos"
    videos.mkdir(parents=True)
    seed = videos / "seed.mp4"
    seed.write_bytes(b"\0" * 1024)
    with (root / "coarse.csv").open("w", encoding="utf-8") as f:
        f.write("name,subtitle,description,labels\n")
        for i in range(rows):
            name = f"clip_{i:08d}"
            os.symlink(seed, videos / f"{name}.mp4")
            f.write(f'{name},"I did not expect to see you here, row {i}.","In the video the person smiles; '
                    f'in the audio the voice rises; the text is warm. Therefore happy and surprised.",'
                    f'"happy,surprised"\n')


def worker(corpus: Path, out: Path, samples_per_shard: int) -> dict:
    from affectgpt.corpus import scan_csv, split_csv
    from affectgpt.packing import ShardResult, finish, plan_shards, prepare
    from shards.index import read_index
    from shards.schema import PackConfig
    from shards.writer import ShardInfo

    times = {}
    start = time.perf_counter()
    csv_path = split_csv(corpus, "coarse")
    records, problems = scan_csv(csv_path, corpus)
    times["read_csv_s"] = time.perf_counter() - start
    cfg = PackConfig(samples_per_shard=samples_per_shard)
    start = time.perf_counter()
    plans = plan_shards(records, "coarse", cfg)
    times["plan_s"] = time.perf_counter() - start
    start = time.perf_counter()
    prepare(str(out), "coarse", plans)
    times["prepare_s"] = time.perf_counter() - start
    # What each shard task returns (sizes and hashes are stand-ins: no shard is written).
    results = [ShardResult(p.file, p.digest, ShardInfo(p.file, len(p.records), 190_000 * len(p.records), "0" * 64),
                           (), 0) for p in plans]
    start = time.perf_counter()
    index = finish(str(out), "coarse", cfg, results, problems, {"corpus": str(corpus), "rows": len(records)})
    times["write_index_s"] = time.perf_counter() - start
    start = time.perf_counter()
    read_index(str(out))
    times["read_index_s"] = time.perf_counter() - start
    return {"rows": len(records) + len(problems), "shards": len(index.shards), "problems": len(problems),
            **times, "total_s": sum(times.values()),
            "index_mb": (out / "index.json").stat().st_size / 1e6,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--samples-per-shard", type=int, default=256)
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the corpus is made")
    p.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.samples_per_shard)))
        return 0
    results = []
    for rows in (args.rows // 10, args.rows):
        tmp = Path(tempfile.mkdtemp(prefix="pack-planning-", dir=args.dir))
        try:
            start = time.perf_counter()
            make_corpus(tmp / "corpus", rows)
            made = time.perf_counter() - start
            cmd = [sys.executable, __file__, "--worker", str(tmp / "corpus"), str(tmp / "out"),
                   "--samples-per-shard", str(args.samples_per_shard)]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            result = json.loads(proc.stdout.splitlines()[-1])
            results.append(result)
            print(f"{rows:>9,} rows ({made:.0f} s to make): {result['shards']:,} shards, read+check CSV "
                  f"{result['read_csv_s']:.1f} s, plan {result['plan_s']:.1f} s, prepare {result['prepare_s']:.1f} s, "
                  f"index {result['write_index_s']:.1f} s ({result['index_mb']:.1f} MB), read index "
                  f"{result['read_index_s']:.2f} s; total {result['total_s']:.1f} s, driver peak RSS "
                  f"{result['peak_rss_mb']:.0f} MB")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    small, big = results
    print(f"x{big['rows'] / small['rows']:.0f} rows: time x{big['total_s'] / small['total_s']:.1f}, "
          f"peak RSS x{big['peak_rss_mb'] / small['peak_rss_mb']:.1f}")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
