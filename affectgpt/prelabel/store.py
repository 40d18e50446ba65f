"""The resumable per-sample store and the output directory of a pre-labelling run.

OUT/
  coarse.csv               labelled samples in the corpus layout (name,subtitle,description,labels), CSV order;
                           written last: its presence means the run finished
  failed.csv               name,row,stage,reason: every sample that is not in coarse.csv
  stages/<stage>.jsonl     each stage's output per sample that got through it (visual, acoustic, merge, labels,
                           translate)
  videos -> CORPUS/videos  a symlink, so OUT is a corpus: `ray_jobs.pack --corpus OUT --split coarse`
  .prelabel/run.json       config, corpus and split of the run; a resumed run must match it
  .prelabel/parts/part-<run>-<seq>.jsonl   finished samples, one JSON line each

Samples are persisted as they finish, a batch per part file: written under a temporary name, fsync'd, then
renamed, so a part is complete or absent, and a killed run loses at most the batches in flight. A re-run
reads every part, skips the samples it finds (labelled or failed; failed ones are redone on request) and
writes the outputs from all parts; a name found twice (a retried failure) keeps its latest record.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectgpt.atomic import is_temp, write_atomic
from affectgpt.config import flatten
from affectgpt.corpus import Record, RowProblem

STATE_DIR = ".prelabel"
COARSE_FILE = "coarse.csv"
FAILED_FILE = "failed.csv"
STAGE_OUTPUTS = {"visual": "visual", "acoustic": "acoustic", "merge": "description", "labels": "labels",
                 "translate": "translation"}


class StoreError(RuntimeError):
    """OUT cannot take this run (another config's results, a damaged part file); the message says which."""


class SampleStore:
    def __init__(self, out: Path, fingerprint: dict[str, Any]):
        self.out = out
        self.parts = out / STATE_DIR / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)
        _check_run(out / STATE_DIR / "run.json", fingerprint)
        (out / COARSE_FILE).unlink(missing_ok=True)  # OUT stops looking finished before anything changes
        for tmp in (p for p in self.parts.iterdir() if is_temp(p.name)):
            tmp.unlink()  # a killed writer's part: its samples were never counted as done
        self.run_id = time.time_ns()
        self.sequence = 0

    def load(self) -> dict[str, dict[str, Any]]:
        """Every finished sample, by name."""
        done: dict[str, dict[str, Any]] = {}
        for path in sorted(self.parts.glob("part-*.jsonl")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                try:
                    record = json.loads(line)
                    done[record["name"]] = record
                except (ValueError, KeyError, TypeError) as e:
                    raise StoreError(f"{path}, line {number}: not a sample record ({e}); parts are renamed into "
                                     "place complete, so this file was changed afterwards: delete it to redo "
                                     "its samples") from None
        return done

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        path = self.parts / f"part-{self.run_id}-{self.sequence:06d}.jsonl"
        self.sequence += 1
        write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), durable=True)


def pending(records: list[Record], done: dict[str, dict[str, Any]], retry_failed: bool = False) -> list[Record]:
    """The records still to label: not finished, or (``retry_failed``) finished as failed."""
    return [r for r in records if r.name not in done or (retry_failed and done[r.name]["error"])]


@dataclass(frozen=True)
class Outcome:
    labelled: list[dict[str, Any]]
    failed: list[dict[str, Any]]  # name, row, stage, reason


def write_outputs(out: Path, corpus: Path, records: list[Record], problems: list[RowProblem],
                  done: dict[str, dict[str, Any]], translate: bool) -> Outcome:
    """coarse.csv, failed.csv, stages/*.jsonl and the videos link, from the store, in CSV row order."""
    missing = [r.name for r in records if r.name not in done]
    if missing:
        raise StoreError(f"{len(missing)} samples have no result after the run (first: {missing[:5]})")
    finished = [done[r.name] for r in records]
    labelled = [s for s in finished if not s["error"]]
    failed = [{"name": p.name, "row": p.row, "stage": "input", "reason": p.reason} for p in problems]
    failed += [{"name": s["name"], "row": s["row"], "stage": s["stage"], "reason": s["error"]}
               for s in finished if s["error"]]
    failed.sort(key=lambda f: f["row"])

    (out / "stages").mkdir(exist_ok=True)
    for stage, key in STAGE_OUTPUTS.items():
        if stage == "translate" and not translate:
            continue
        lines = []
        for s in finished:
            if s[key]:
                value = s[key].split(",") if key == "labels" else s[key]
                lines.append(json.dumps({"name": s["name"], key: value}, ensure_ascii=False) + "\n")
        write_atomic(out / "stages" / f"{stage}.jsonl", "".join(lines), durable=True)
    write_atomic(out / FAILED_FILE, _csv(["name", "row", "stage", "reason"],
                                         [[f["name"], f["row"], f["stage"], f["reason"]] for f in failed]),
                 durable=True)
    _link_videos(out, corpus)
    write_atomic(out / COARSE_FILE, _csv(["name", "subtitle", "description", "labels"],
                                         [[s["name"], s["subtitle"], s["description"], s["labels"]]
                                          for s in labelled]), durable=True)
    return Outcome(labelled, failed)


def _check_run(path: Path, fingerprint: dict[str, Any]) -> None:
    if path.is_file():
        before = flatten(json.loads(path.read_text(encoding="utf-8")))
        now = flatten(json.loads(json.dumps(fingerprint)))
        changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        if changed:
            raise StoreError(f"{path.parent.parent} holds results of a run with other settings ({', '.join(changed)} "
                             "differ): resume with the same config, corpus and split, or use a new --out")
        return
    write_atomic(path, json.dumps(fingerprint, indent=1, ensure_ascii=False) + "\n", durable=True)


def _link_videos(out: Path, corpus: Path) -> None:
    link, target = out / "videos", corpus.resolve() / "videos"
    if link.is_symlink():
        if Path(os.readlink(link)) == target:
            return
        link.unlink()
    elif link.exists():
        raise StoreError(f"{link} exists and is not a link: OUT must not be a corpus directory itself")
    link.symlink_to(target, target_is_directory=True)


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


