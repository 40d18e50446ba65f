"""Pre-labelling throughput: each stage alone in one process, then the Ray job end to end with 1 and 2 actors
per model stage.

  .venv/bin/python benchmarks/prelabel_throughput.py [--corpus DIR] [--num 32] [--cpus 2]
      [--config configs/prelabel-tiny.yaml] [key=value ...]

Per stage: the stage's models loaded in this process (threads as the config gives its actors), then every
clip through it in the config's batches: samples/s of that stage alone, and its share of the serial sum.
End to end: `ray job submit ... -- python -m ray_jobs.prelabel` against a head started here with ``--cpus``
CPUs, once with ``actors: 1`` and once with ``actors: 2`` in every model stage (each actor then asks for half
the CPUs, so both fit the same head). Printed per run: samples/s of the whole job (Ray start-up and model
loading included) and in steady state (from the first to the last persisted part file), and the ratios
2 actors / 1 actor and steady state / serial sum of the stages.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from affectgpt.commands.ray import start_head, stop_head
from affectgpt.config import load_config
from affectgpt.corpus import scan_csv
from affectgpt.prelabel.config import PrelabelConfig
from affectgpt.prelabel.stages import ChatStage, Decode, Describer, LabelStage, apply, new_row
from affectgpt.synth.corpus_writer import SynthConfig, write_corpus

ROOT = Path(__file__).resolve().parents[1]
MODEL_STAGES = ("visual", "acoustic", "merge")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, help="existing corpus (default: synthesize one)")
    p.add_argument("--num", type=int, default=32, help="clips to synthesize (default: 32)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray head (default: 2)")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "prelabel-tiny.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. merge.batch_size=8")
    p.add_argument("--work", type=Path, default=Path("work/bench"), help="scratch dir (default: work/bench)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    work = args.work.resolve()
    corpus = (args.corpus or work / f"prelabel-corpus-{args.num}").resolve()
    if args.corpus is None and not (corpus / "coarse.csv").is_file():
        write_corpus(SynthConfig(out=corpus, num=args.num, fine_fraction=0, test_fraction=0, workers=2))
    cfg = load_config(PrelabelConfig, args.config, args.overrides).resolve(ROOT)
    records, _ = scan_csv(corpus / "coarse.csv", corpus)

    stage_rates = per_stage(cfg, [new_row(r) for r in records])
    runs = {}
    head, _ = start_head(work / "ray", num_cpus=args.cpus)
    try:
        for actors in (1, 2):
            share = {s: getattr(cfg, s).num_cpus / actors for s in MODEL_STAGES}
            overrides = [*args.overrides, *(f"{s}.actors={actors}" for s in MODEL_STAGES),
                         *(f"{s}.num_cpus={share[s]}" for s in MODEL_STAGES)]
            runs[actors] = end_to_end(head, corpus, work / f"prelabel-{actors}-actors", args.config, overrides)
    finally:
        stop_head(head)

    serial = 1 / sum(1 / r for r in stage_rates.values())
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {len(records)} clips; "
          f"config {args.config.name} {' '.join(args.overrides)}")
    print("per stage, one process (samples/s, share of the serial time):")
    for name, rate in stage_rates.items():
        print(f"  {name:9s} {rate:8.2f}   {100 * serial / rate:5.1f}%")
    print(f"  {'serial':9s} {serial:8.2f}   (all stages one after the other)")
    for actors, (whole, steady, summary) in runs.items():
        print(f"Ray job, {actors} actor(s) per stage: whole job {whole:6.2f} samples/s, steady state {steady:6.2f} "
              f"samples/s ({steady / serial:.2f}x serial)")
        print(f"  {summary}")
    print(f"2 actors / 1 actor: whole job {runs[2][0] / runs[1][0]:.2f}x, steady state {runs[2][1] / runs[1][1]:.2f}x")


def per_stage(cfg: PrelabelConfig, rows: list[dict]) -> dict[str, float]:
    stages = {"decode": lambda: Decode(cfg.decode),
              "visual": lambda: Describer("visual", cfg.visual, cfg.decode, ROOT),
              "acoustic": lambda: Describer("acoustic", cfg.acoustic, cfg.decode, ROOT),
              "merge": lambda: ChatStage("merge", cfg.merge),
              "labels": lambda: LabelStage(cfg.require_labels)}
    batch = {"decode": cfg.decode.batch_size, "visual": cfg.visual.batch_size, "acoustic": cfg.acoustic.batch_size,
             "merge": cfg.merge.batch_size, "labels": cfg.merge.batch_size}
    rates = {}
    for name, make in stages.items():
        stage = make()
        start = time.perf_counter()
        for i in range(0, len(rows), batch[name]):
            apply(stage, rows[i:i + batch[name]])
        rates[name] = len(rows) / (time.perf_counter() - start)
        logging.warning("%s: %.2f samples/s", name, rates[name])
        del stage
    return rates


def end_to_end(head, corpus: Path, out: Path, config: Path, overrides: list[str]) -> tuple[float, float, str]:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    job = subprocess.run(
        [str(Path(sys.executable).with_name("ray")), "job", "submit", "--address", head.dashboard_url,
         "--working-dir", ".", "--", "python", "-m", "ray_jobs.prelabel", "--corpus", str(corpus), "--out",
         str(out), "--root", str(ROOT), "--config", str(config.resolve().relative_to(ROOT)), *overrides],
        cwd=ROOT, capture_output=True, text=True,
    )
    found = re.search(r"(\d+) processed now in ([\d.]+) s", job.stdout)
    if not found:
        sys.exit(f"the Ray job failed:\n{job.stdout[-3000:]}\n{job.stderr[-3000:]}")
    whole = int(found.group(1)) / (time.perf_counter() - start)
    parts = sorted((out / ".prelabel" / "parts").glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    after_first = sum(len(p.read_text().splitlines()) for p in parts[1:])
    steady = after_first / max(parts[-1].stat().st_mtime - parts[0].stat().st_mtime, 1e-9)
    summary = next((line for line in job.stdout.splitlines() if line.startswith("where the time goes")), "")
    logging.warning("%s: %s", out.name, json.dumps({"whole": whole, "steady": steady}))
    return whole, steady, summary


if __name__ == "__main__":
    main()
