"""Batched generation for evaluation: describe a shard split (``affectgpt eval``), then extract labels and
score them. One video file becomes a sample through ``affectgpt.packing.clip_sample`` (``affectgpt describe``).

``evaluate_split`` works on a model already in memory, so training can call it on rank 0 after the last step
(with a model whose parameters are whole on that rank: under ZeRO-3, export first and load the export);
the ``eval`` command is the standalone use of the same function.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from affectgpt.atomic import write_atomic
from affectgpt.eval.extract import Extraction, Extractor, LexiconExtractor
from affectgpt.eval.scoring import evaluate
from affectgpt.eval.tasks import TASKS
from affectgpt.eval.wheels import load_wheels

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.csv"
METRICS_FILE = "metrics.json"


@dataclass(kw_only=True)
class GenerationConfig:
    """How descriptions are generated: the settings every describer shares (``affectgpt eval``, a study's
    ``eval`` section, a bench suite, training's validation), each with its one default.

    batch_size: samples per generate call
    max_new_tokens: description length limit
    repetition_penalty: > 1 discourages the word loops small or briefly trained models fall into (1.0: greedy)
    """

    batch_size: int = 8
    max_new_tokens: int = 160
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError(f"batch_size and max_new_tokens must be >= 1, got {self.batch_size}, "
                             f"{self.max_new_tokens}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    def generation(self) -> dict[str, Any]:
        """The generation settings alone, to hand on to another config that shares them."""
        return {f.name: getattr(self, f.name) for f in fields(GenerationConfig)}


@dataclass(kw_only=True)
class EvalConfig(GenerationConfig):
    """How a split is described and scored (``affectgpt eval``, the study's ``eval`` section, a bench corpus);
    the generation settings are ``GenerationConfig``'s.

    limit: evaluate only the first N samples of the split (smoke runs)
    gt_source: ground truth from the samples' label lists (labels), extracted from the reference descriptions
        (description, e.g. EMER-Fine, which has no label column), or labels if any sample has some (auto)
    bootstrap: bootstrap resamples for the 95% intervals, 0 for none
    seed: seed of the reading order, the bootstrap and an untrained baseline's weights
    task: how the ground truth is scored (open_vocabulary, discrete or sentiment)
    wheels: emotion-wheel TSV (label, level1, level2; 'default' is the shipped one); several: metrics per wheel
        and their mean (none: the shipped wheel)
    """

    limit: int | None = None
    gt_source: Literal["auto", "labels", "description"] = "auto"
    bootstrap: int = 1000
    seed: int = 0
    task: str = "open_vocabulary"
    wheels: list[Path] = field(default_factory=list, metadata={"flag": "wheel"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


def evaluate_split(
    model: Any,
    shards_dir: str | Path,
    out_dir: str | Path,
    cfg: EvalConfig | None = None,
    extractor: Extractor | None = None,
    train_labels: list[list[str]] | None = None,
    model_name: str | None = None,
    baselines: dict[str, dict] | None = None,
) -> dict:
    """Describe every sample of a shard split, write ``predictions.csv`` (name, description, labels) and
    ``metrics.json`` into ``out_dir``, and return the metrics (with the most-frequent baseline when
    ``train_labels`` are given). ``model_name`` (e.g. the model directory) is recorded in the metrics;
    ``baselines`` (name -> metrics of another run on the same split, e.g. the untrained model) are shown
    next to the model's."""
    from tqdm import tqdm

    from shards.loader import ShardLoader

    cfg = cfg or EvalConfig()
    extractor = extractor or LexiconExtractor()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # resampled=False on a single reader: every sample exactly once, in a fixed order
    loader = ShardLoader(str(shards_dir), cfg.batch_size, resampled=False, seed=cfg.seed)
    names: list[str] = []
    generated: list[str] = []
    references: list[tuple[str, list[str]]] = []
    start = time.perf_counter()
    total = min(len(loader), -(-cfg.limit // cfg.batch_size)) if cfg.limit else len(loader)
    for batch in tqdm(loader, total=total, desc="describe", unit="batch"):
        if cfg.limit is not None:
            batch = batch[: cfg.limit - len(names)]
        generated += model.generate(batch, max_new_tokens=cfg.max_new_tokens,
                                    repetition_penalty=cfg.repetition_penalty)
        names += [s["name"] for s in batch]
        references += [(s["description"], list(s["labels"])) for s in batch]
        if cfg.limit is not None and len(names) >= cfg.limit:
            break
    seconds = time.perf_counter() - start
    result, predicted = score_descriptions(names, generated, references, cfg, extractor, train_labels)
    _write_predictions(out_dir / PREDICTIONS_FILE, names, generated, [p.labels for p in predicted])
    if baselines:
        result.setdefault("baselines", {}).update(baselines)
    result["run"] = {
        "model": model_name, "shards": str(shards_dir), "samples": len(names), "gt_source": result.pop("gt_source"),
        "extractor": type(extractor).__name__, "generate_seconds": round(seconds, 2),
        "samples_per_second": round(len(names) / seconds, 3) if seconds > 0 else None,
        "max_new_tokens": cfg.max_new_tokens, "repetition_penalty": cfg.repetition_penalty,
        "batch_size": cfg.batch_size, "task": cfg.task, "wheels": [str(w) for w in cfg.wheels],
    }
    write_atomic(out_dir / METRICS_FILE, json.dumps(result, indent=2) + "\n", durable=False)
    log.info("described %d samples in %.1f s (%.2f samples/s); wrote %s and %s", len(names), seconds,
             len(names) / max(seconds, 1e-9), out_dir / PREDICTIONS_FILE, out_dir / METRICS_FILE)
    return result


def score_descriptions(names: list[str], generated: list[str], references: list[tuple[str, list[str]]],
                       cfg: EvalConfig, extractor: Extractor, train_labels: list[list[str]] | None = None,
                       ) -> tuple[dict, list[Extraction]]:
    """Extract the labels of generated descriptions and score them against the references (description,
    labels) per ``cfg`` (ground-truth source, task, wheels): the metrics (with ``gt_source`` resolved) and the
    predicted extractions. Training's evaluation and ``affectgpt eval`` score through this one function."""
    predicted = extractor.extract_many(generated)
    gt_source = cfg.gt_source
    if gt_source == "auto":
        gt_source = "labels" if any(labels for _, labels in references) else "description"
    if gt_source == "labels":
        gt_labels = [labels for _, labels in references]
    else:
        gt_labels = [e.labels for e in extractor.extract_many([d for d, _ in references])]
    result = evaluate(
        dict(zip(names, gt_labels, strict=True)),
        {n: p.labels for n, p in zip(names, predicted, strict=True)},
        train_labels=train_labels, bootstrap=cfg.bootstrap, seed=cfg.seed, task=cfg.task,
        wheels=load_wheels(cfg.wheels),
    )
    result["gt_source"] = gt_source
    return result, predicted


def _write_predictions(path: Path, names: list[str], descriptions: list[str], labels: list[list[str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "description", "labels"])
    w.writerows([n, d, ",".join(ls)] for n, d, ls in zip(names, descriptions, labels, strict=True))
    write_atomic(path, buf.getvalue(), durable=False)
