"""Ray job: EMER-Coarse pre-labelling of an unlabelled corpus (Ray Data batch inference on actor pools).

  ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
      python -m ray_jobs.prelabel --corpus /data/unlabelled --out /data/emer-coarse --root $PWD \\
      [--split coarse] [--config configs/prelabel.yaml] [--limit N] [merge.batch_size=16 ...]

Input: ``CORPUS/<split>.csv`` in the corpus layout (descriptions and labels are ignored) and CORPUS/videos/.
Output: OUT/coarse.csv (name,subtitle,description,labels), OUT/failed.csv (name,row,stage,reason),
OUT/stages/*.jsonl and OUT/videos linked to CORPUS/videos, so OUT feeds the shard job unchanged:
``python -m ray_jobs.pack --corpus OUT --split coarse --out SHARDS`` (see affectgpt/prelabel/store.py).

Paths must be absolute: under ``--working-dir`` the job runs in an uploaded copy of the project, where
``models/`` is absent; relative model paths in the config are resolved against ``--root`` (the project dir).

Pipeline: decode (Ray tasks) -> visual describer -> acoustic describer -> merger + label extraction ->
translator (optional); each model stage is a fixed pool of ``actors`` actors that load their model once, get
batches of ``batch_size`` rows, and ask for ``num_cpus`` and ``num_gpus`` each (a GPU each by default when
the cluster has GPUs). Label extraction runs in the merger's actors: it takes microseconds and would
otherwise hold its own CPU slot.

Resume: finished samples are persisted a batch at a time (complete-or-absent part files); a killed job
resubmitted with the same config, corpus and split skips them, and coarse.csv has every sample once. Failed
samples count as finished (their failure is the result) unless ``--retry-failed`` is given.

Failures are per sample (bad media, an empty generation, a description naming no emotion, a model error on
one clip) and never stop the job; the summary prints ``in = labelled + failed``.

Exit codes: 0 every sample labelled; 3 finished, but samples failed (see OUT/failed.csv); 1 the job could
not finish. Through `ray job submit`, any non-zero code marks the job FAILED and `ray job submit` exits 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from affectgpt.config import ConfigError, add_config_arguments, config_from_args, to_dict
from affectgpt.corpus import CorpusError, Record, scan_csv, split_csv
from affectgpt.prelabel.config import PrelabelConfig, StageConfig
from affectgpt.prelabel.stages import (
    ROW_FIELDS,
    ChatStage,
    Decode,
    Describer,
    LabelStage,
    Row,
    Stage,
    apply,
    blank_media,
    new_row,
)
from affectgpt.prelabel.store import FAILED_FILE, SampleStore, StoreError, pending, write_outputs

log = logging.getLogger("ray_jobs.prelabel")

EXIT_OK, EXIT_FAILED, EXIT_SAMPLES_FAILED = 0, 1, 3
MEDIA = ("frames", "audio", "has_audio")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ray_jobs.prelabel", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, required=True, help="corpus directory (videos/ + <split>.csv), absolute")
    p.add_argument("--split", default="coarse", help="CSV to label (default: coarse)")
    p.add_argument("--out", type=Path, required=True, help="output directory, absolute")
    p.add_argument("--root", type=Path, default=Path.cwd(),
                   help="absolute dir that relative model paths are resolved against (default: cwd)")
    p.add_argument("--limit", type=int, default=None, help="label only the first N rows of the CSV")
    p.add_argument("--retry-failed", action="store_true",
                   help="redo the clips an earlier run recorded as failed (default: keep their failure)")
    add_config_arguments(p, PrelabelConfig)
    p.set_defaults(config=Path("configs/prelabel.yaml"))  # the shipped recipe, in the job's working dir
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    import ray
    from tqdm import tqdm

    if not all(p.is_absolute() for p in (args.corpus, args.out, args.root)):
        log.error("--corpus, --out and --root must be absolute (the job runs in a copy of the working dir); got "
                  "--corpus %s --out %s --root %s", args.corpus, args.out, args.root)
        return EXIT_FAILED
    cfg = config_from_args(PrelabelConfig, args).resolve(args.root)
    csv_path = split_csv(args.corpus, args.split)
    records, problems = scan_csv(csv_path, args.corpus)
    if args.limit is not None:
        rows = sorted([r.row for r in records] + [p.row for p in problems])[: args.limit]
        last = rows[-1] if rows else 0
        records, problems = [r for r in records if r.row <= last], [p for p in problems if p.row <= last]
    args.out.mkdir(parents=True, exist_ok=True)
    store = SampleStore(args.out, {"config": to_dict(cfg), "corpus": str(args.corpus), "split": args.split})
    done = store.load()
    todo = pending(records, done, args.retry_failed)
    log.info("%s: %d rows (%d bad in the CSV, %d finished earlier) -> %d to label into %s", csv_path,
             len(records) + len(problems), len(problems), len(records) - len(todo), len(todo), args.out)

    start = time.perf_counter()
    new: list[dict[str, Any]] = []
    if todo:
        if not ray.is_initialized():
            ray.init()  # inside `ray job submit` this joins the cluster named by RAY_ADDRESS
        dataset = build_pipeline(ray, todo, cfg, args.root)
        with tqdm(total=len(todo), unit="clip", desc="prelabel", mininterval=2) as bar:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                finished = to_rows(batch)
                store.append(finished)
                new += finished
                bar.update(len(finished))
    elapsed = time.perf_counter() - start

    outcome = write_outputs(args.out, args.corpus, records, problems, store.load(),
                            translate=cfg.translate.model is not None)
    total = len(records) + len(problems)
    for f in outcome.failed[:20]:
        log.warning("failed %s (row %d) at %s: %s", f["name"], f["row"], f["stage"], f["reason"])
    print(f"{args.split}: in {total} = labelled {len(outcome.labelled)} + failed {len(outcome.failed)}; "
          f"{len(records) - len(todo)} kept from an earlier run; {len(new)} processed now in {elapsed:.1f} s "
          f"({len(new) / max(elapsed, 1e-9):.2f} clips/s) -> {args.out}")
    if new:
        print("where the time goes (actor busy seconds per clip): " + time_split(new))
    if outcome.failed:
        print(f"failed list: {args.out / FAILED_FILE} (exit code {EXIT_SAMPLES_FAILED})")
        return EXIT_SAMPLES_FAILED
    return EXIT_OK


def build_pipeline(ray: Any, todo: list[Record], cfg: PrelabelConfig, root: Path) -> Any:
    """The Ray Data plan; nothing runs until the driver iterates it."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver's own bar counts persisted clips instead
    gpus = ray.cluster_resources().get("GPU", 0)

    def actors(stage: StageConfig, *makers: tuple[Callable[..., Stage], tuple]) -> dict[str, Any]:
        return {"fn_constructor_args": makers, "batch_size": stage.batch_size,
                "compute": ray.data.ActorPoolStrategy(size=stage.actors),
                "num_cpus": stage.num_cpus, "batch_format": "numpy",
                "num_gpus": stage.num_gpus if stage.num_gpus is not None else (1 if gpus else 0)}

    ds = ray.data.from_items([new_row(r) for r in todo])
    ds = ds.map_batches(decode_batch, fn_args=(cfg,), batch_size=cfg.decode.batch_size,
                        num_cpus=cfg.decode.num_cpus, batch_format="numpy")
    ds = ds.map_batches(StageActor, **actors(cfg.visual, (Describer, ("visual", cfg.visual, cfg.decode, root))))
    ds = ds.map_batches(StageActor, **actors(cfg.acoustic, (Describer, ("acoustic", cfg.acoustic, cfg.decode, root))))
    ds = ds.drop_columns(list(MEDIA))
    ds = ds.map_batches(StageActor, **actors(cfg.merge, (ChatStage, ("merge", cfg.merge)),
                                             (LabelStage, (cfg.require_labels,))))
    stages = ["decode", "visual", "acoustic", "merge", "labels"]
    if cfg.translate.model is not None:
        ds = ds.map_batches(StageActor, **actors(cfg.translate, (ChatStage, ("translate", cfg.translate))))
        stages.append("translate")
    return ds.select_columns([*ROW_FIELDS, *(f"seconds_{s}" for s in stages)])


def decode_batch(batch: dict[str, np.ndarray], cfg: PrelabelConfig) -> dict[str, np.ndarray]:
    rows = apply(Decode(cfg.decode), to_rows(batch))
    blank_media(rows, cfg.decode)
    return to_batch(rows)


class StageActor:
    """Builds its stages (loading their models) once per actor, then runs them on each batch."""

    def __init__(self, *makers: tuple[Callable[..., Stage], tuple]):
        self.stages = [make(*args) for make, args in makers]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = to_rows(batch)
        for stage in self.stages:
            apply(stage, rows)
        return to_batch(rows)


def to_rows(batch: dict[str, np.ndarray]) -> list[Row]:
    size = len(next(iter(batch.values())))
    return [{k: v[i].item() if isinstance(v[i], np.generic) else v[i] for k, v in batch.items()}
            for i in range(size)]


def to_batch(rows: list[Row]) -> dict[str, np.ndarray]:
    batch = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if all(isinstance(v, np.ndarray) for v in values) and len({v.shape for v in values}) > 1:
            column = np.empty(len(values), dtype=object)  # ragged (audio of different lengths)
            for i, v in enumerate(values):
                column[i] = v
            batch[key] = column
        else:
            batch[key] = np.stack(values) if isinstance(values[0], np.ndarray) else np.array(values)
    return batch


def time_split(rows: list[Row]) -> str:
    seconds = {k.removeprefix("seconds_"): sum(r[k] for r in rows) / len(rows)
               for k in rows[0] if k.startswith("seconds_")}
    total = sum(seconds.values()) or 1.0
    return ", ".join(f"{name} {s:.3f} s ({100 * s / total:.0f}%)" for name, s in seconds.items())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    args = parse_args(argv)
    try:
        return run(args)
    except (CorpusError, ConfigError, StoreError, ValueError) as e:
        log.error("%s", e)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
