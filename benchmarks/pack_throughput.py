"""Pack throughput: the Ray job on a 2-CPU local head vs the same packing in one plain process.

  .venv/bin/python benchmarks/pack_throughput.py [--corpus DIR] [--num 2000] [--cpus 2]

Both pack the same split with the same config into fresh directories (synthesized into work/bench/ unless
--corpus is given; a synthesized corpus is kept and reused). The baseline runs ``affectgpt.packing.pack_split``
(plan, pack every shard, finish) in this process; the baseline runs before and after the Ray run and their mean is used
(the load of a shared machine drifts). The Ray run is `ray job submit ... -- python -m ray_jobs.pack` against
a head started here with ``--cpus`` CPUs and stopped at the end. Printed, with the ratios to the baseline:
  packing          the job's own clock: Ray connection, worker start-up (~1 s) and all tasks;
  after 1st shard  the throughput once the workers run, which is what a 115k-clip EMER-Coarse job sees;
  whole submit     the `ray job submit` call, adding the CLI's own latency (~7 s here: submission, the job's
                   start, log streaming), whatever the corpus size.
Target: packing throughput >= 1.7x with 2 CPUs. 2000 clips by default so that the fixed start-up weighs
little. Each pack task decodes with one FFmpeg thread (it owns one CPU), and so does the baseline.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from affectgpt.commands.ray import start_head, stop_head
from affectgpt.packing import pack_split
from affectgpt.synth.corpus_writer import SynthConfig, write_corpus
from shards.schema import PackConfig

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, help="existing corpus (default: synthesize one)")
    p.add_argument("--num", type=int, default=2000, help="clips to synthesize (default: 2000)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray head (default: 2)")
    p.add_argument("--samples-per-shard", type=int, default=16, help="default: 16")
    p.add_argument("--work", type=Path, default=Path("work/bench"), help="scratch dir (default: work/bench)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    work = args.work.resolve()
    corpus = (args.corpus or work / f"corpus-{args.num}").resolve()
    if args.corpus is None:
        write_corpus(SynthConfig(out=corpus, num=args.num, fine_fraction=0, test_fraction=0, workers=2))
    cfg = PackConfig(samples_per_shard=args.samples_per_shard)
    def one_process() -> tuple[float, int, int]:
        out = work / "pack-single"
        shutil.rmtree(out, ignore_errors=True)
        report = pack_split(corpus, "coarse", str(out), cfg, progress=False)  # the job's clock: after planning
        return report.clips / report.seconds, report.clips, len(report.index.shards)

    before, clips, shards = one_process()

    out = work / "pack-ray"
    shutil.rmtree(out, ignore_errors=True)
    head, _ = start_head(work / "ray", num_cpus=args.cpus)
    try:
        start = time.perf_counter()
        job = subprocess.run(
            [str(Path(sys.executable).with_name("ray")), "job", "submit", "--address", head.dashboard_url,
             "--working-dir", ".", "--", "python", "-m", "ray_jobs.pack", "--corpus", str(corpus), "--split",
             "coarse", "--out", str(out), "--samples-per-shard", str(args.samples_per_shard)],
            cwd=ROOT, capture_output=True, text=True,
        )
        submit = clips / (time.perf_counter() - start)
    finally:
        stop_head(head)
    found = re.search(r"\(([\d.]+) clips/s\)", job.stdout)
    if job.returncode != 0 or not found:
        sys.exit(f"the Ray job failed:\n{job.stdout[-3000:]}\n{job.stderr[-3000:]}")
    packing = float(found.group(1))
    steady = re.search(r"first shard after ([\d.]+) s .*then ([\d.]+) clips/s", job.stdout)
    after = one_process()[0]  # the baseline brackets the Ray run: on a shared machine the load drifts
    single = (before + after) / 2
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {clips} clips, "
          f"{shards} shards of {args.samples_per_shard}")
    print(f"one plain process:                {single:6.1f} samples/s   (before {before:.1f}, after {after:.1f})")
    print(f"Ray job, {args.cpus} CPUs (packing):        {packing:6.1f} samples/s   ratio {packing / single:.2f}x")
    if steady:
        print(f"Ray job, {args.cpus} CPUs (after 1st shard): {float(steady.group(2)):6.1f} samples/s   ratio "
              f"{float(steady.group(2)) / single:.2f}x   (the first shard took {steady.group(1)} s)")
    print(f"Ray job, {args.cpus} CPUs (whole submit):   {submit:6.1f} samples/s   ratio {submit / single:.2f}x")


if __name__ == "__main__":
    main()
