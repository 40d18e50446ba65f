"""Loader throughput and storage cost: shards vs decoding the source mp4s, JPEG vs raw frames.

  .venv/bin/python benchmarks/loader_throughput.py [--corpus DIR] [--num 300] [--workers 2] [--epochs 5]

Measured in this one script, on the same clips (synthesized into work/bench/ unless --corpus is given):
  baseline   decode every mp4 with PyAV per sample (``affectgpt.media.decode_clip``), one process
  shards     ``ShardLoader`` over the packed shards with ``--workers`` DataLoader workers, ``--epochs`` epochs
             of the clips, each epoch's worker start-up included; then the rate once workers run (start-up
             is paid per epoch: ~50 ms, a third of a 120-clip epoch here, nothing in a 115k-clip one)
  format     per sample: bytes and decode time of the frames as JPEG (the schema's choice) vs raw .npy
  storage    shard bytes per sample vs source mp4 bytes per sample
Prints samples/s and the ratios (target: shards >= 10x the mp4 baseline), by the wall clock and per CPU-second:
on a shared machine the wall clock measures the neighbours' load as much as the code.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import resource
import time
from pathlib import Path

import numpy as np

from affectgpt.corpus import scan_csv
from affectgpt.media import decode_clip
from affectgpt.packing import pack_split
from affectgpt.synth.corpus_writer import SynthConfig, write_corpus
from shards.loader import ShardLoader
from shards.schema import PackConfig, decode_sample, encode_sample

log = logging.getLogger("loader_throughput")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, help="existing corpus (default: synthesize one)")
    p.add_argument("--num", type=int, default=300, help="clips to synthesize (default: 300)")
    p.add_argument("--workers", type=int, default=2, help="loader workers (default: 2)")
    p.add_argument("--epochs", type=int, default=5, help="loader epochs to time (default: 5)")
    p.add_argument("--work", type=Path, default=Path("work/bench"), help="scratch dir (default: work/bench)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    corpus = args.corpus or args.work / f"corpus-{args.num}"
    if args.corpus is None:
        write_corpus(SynthConfig(out=corpus, num=args.num, fine_fraction=0, test_fraction=0, workers=2))
    records, _ = scan_csv(corpus / "coarse.csv", corpus)
    cfg = PackConfig(samples_per_shard=32)
    out = str((args.work / f"shards-{corpus.name}").resolve())
    index = pack_split(corpus, "coarse", out, cfg, progress=False).index
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {len(records)} clips, "
          f"{cfg.frames} frames of {cfg.size}x{cfg.size}")

    clock = _Clock()
    for record in records:
        decode_clip(record.video, cfg.frames, cfg.size, cfg.sample_rate, cfg.max_audio_seconds)
    mp4_wall, mp4_cpu = clock.rates(len(records))

    loader = ShardLoader(out, batch_size=8, num_workers=args.workers, resampled=False)
    clock = _Clock()
    count, first_batch, running, running_count = 0, [], 0.0, 0
    for _ in range(args.epochs):  # every epoch starts its workers, and that time counts
        start = time.perf_counter()
        for i, batch in enumerate(loader):
            if i == 0:
                first_batch.append(time.perf_counter() - start)
            else:
                running_count += len(batch)
            count += len(batch)
        running += time.perf_counter() - start - first_batch[-1]
    shard_wall, shard_cpu = clock.rates(count)
    print("samples/s by the wall clock, and per CPU-second (this process and its workers: the rate per core an "
          "idle machine would give)")
    print(f"mp4 decode (PyAV, 1 process):   {mp4_wall:7.1f} samples/s   {mp4_cpu:7.1f} per CPU-s")
    print(f"shards ({args.workers} workers):            {shard_wall:7.1f} samples/s   {shard_cpu:7.1f} per CPU-s   "
          f"ratio {shard_wall / mp4_wall:.1f}x wall, {shard_cpu / mp4_cpu:.1f}x per CPU-s")
    print(f"  once running (after each epoch's first batch): {running_count / running:7.1f} samples/s   ratio "
          f"{running_count / running / mp4_wall:.1f}x wall; first batch of each epoch after "
          f"{', '.join(f'{t * 1e3:.0f}' for t in first_batch)} ms (worker start-up)")

    jpeg, raw = _frame_formats(records[:16], cfg)
    print(f"frames as JPEG q{cfg.jpeg_quality}: {jpeg[0] / 1e3:7.1f} KB/sample, decode {jpeg[1] * 1e3:5.2f} ms/sample")
    print(f"frames as raw .npy: {raw[0] / 1e3:7.1f} KB/sample, decode {raw[1] * 1e3:5.2f} ms/sample   "
          f"(raw/JPEG: {raw[0] / jpeg[0]:.1f}x bytes, {raw[1] / jpeg[1]:.2f}x decode time)")

    mp4_bytes = sum(r.video.stat().st_size for r in records) / len(records)
    shard_bytes = index.bytes / index.samples
    print(f"bytes/sample: shards {shard_bytes / 1e3:.1f} KB vs source mp4 {mp4_bytes / 1e3:.1f} KB "
          f"(ratio {shard_bytes / mp4_bytes:.2f}x); with raw frames shards would be "
          f"{(shard_bytes - jpeg[0] + raw[0]) / mp4_bytes:.1f}x")


class _Clock:
    """Wall time and CPU time (this process plus reaped children, i.e. finished DataLoader workers)."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), self._cpu()

    @staticmethod
    def _cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def rates(self, count: int) -> tuple[float, float]:
        return count / (time.perf_counter() - self.wall), count / (self._cpu() - self.cpu)


def _frame_formats(records, cfg: PackConfig) -> tuple[tuple[float, float], tuple[float, float]]:
    """(bytes, seconds to decode) per sample for JPEG frames (via the schema) and for one raw .npy array."""
    jpeg_bytes, jpeg_time, raw_bytes, raw_time = 0, 0.0, 0, 0.0
    for record in records:
        clip = decode_clip(record.video, cfg.frames, cfg.size, cfg.sample_rate, cfg.max_audio_seconds)
        fields = {"name": record.name, "subtitle": "", "description": "", "labels": [], "split": "coarse"}
        members = encode_sample(fields, clip.frames, clip.audio, cfg)
        jpeg_bytes += len(members["frames.jpg"])
        start = time.perf_counter()
        decode_sample(members, cfg, record.name)
        jpeg_time += time.perf_counter() - start
        buf = io.BytesIO()
        np.save(buf, clip.frames, allow_pickle=False)
        raw_bytes += buf.tell()
        start = time.perf_counter()
        np.load(io.BytesIO(buf.getvalue()), allow_pickle=False)
        raw_time += time.perf_counter() - start
    n = len(records)
    return (jpeg_bytes / n, jpeg_time / n), (raw_bytes / n, raw_time / n)


if __name__ == "__main__":
    main()
