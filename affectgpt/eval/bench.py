"""A benchmark suite: one model described on several evaluation corpora, each scored by its declared task
(``affectgpt.eval.tasks``), with the mean of the primary scores as the headline, as MER-UniBench reports.

A suite is a YAML file (``configs/bench/*.yaml``)::

    name: synth
    root: work/demo/shards              # relative shard paths resolve against it (default: the working dir)
    corpora:
      - {name: synth-ov, task: open_vocabulary, shards: test}
      - {name: synth-discrete, task: discrete, shards: test_discrete}
      - {name: synth-sentiment, task: sentiment, shards: test_sentiment}
    wheels: []                          # emotion-wheel TSVs; none: the shipped wheel
    batch_size: 8
    max_new_tokens: 160

``run_bench`` writes, under its output directory, each corpus's ``predictions.csv`` + ``metrics.json``
(``<model>/<suite>/<corpus>/``) and ``bench.json`` + ``bench.md`` (one row per corpus, one column per model,
the mean last).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from affectgpt.atomic import write_atomic
from affectgpt.eval.extract import Extractor
from affectgpt.eval.generate import EvalConfig, GenerationConfig, evaluate_split
from affectgpt.eval.tasks import PRIMARY, TASKS

log = logging.getLogger(__name__)

BENCH_JSON, BENCH_MD = "bench.json", "bench.md"


@dataclass
class BenchCorpus:
    name: str
    task: str  # open_vocabulary | discrete | sentiment
    shards: Path  # the corpus's shard dir (relative: against the suite's root)
    gt_source: Literal["auto", "labels", "description"] = "auto"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"corpus {self.name}: task must be one of {', '.join(TASKS)}, got {self.task!r}")


@dataclass(kw_only=True)
class SuiteConfig(GenerationConfig):
    """A suite: its corpora, and how every one of them is described (``GenerationConfig``) and scored.

    name: the suite
    corpora: the corpora, each scored by its task
    root: relative shard paths resolve against it (none: the working directory)
    wheels: emotion-wheel TSVs (none: the shipped wheel)
    limit: the first N samples of each corpus (smoke runs)
    bootstrap: bootstrap resamples for the 95% intervals, 0 for none
    """

    name: str
    corpora: list[BenchCorpus]
    root: Path | None = None
    wheels: list[Path] = field(default_factory=list)
    limit: int | None = None
    bootstrap: int = EvalConfig.bootstrap

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.corpora:
            raise ValueError(f"suite {self.name}: no corpora")
        names = [c.name for c in self.corpora]
        if len(set(names)) != len(names):
            raise ValueError(f"suite {self.name}: corpus names must differ, got {names}")

    def shards(self, corpus: BenchCorpus) -> Path:
        return corpus.shards if self.root is None or corpus.shards.is_absolute() else self.root / corpus.shards


@dataclass
class Score:
    model: str
    suite: str
    corpus: str
    task: str
    metric: str  # the task's primary metric
    value: float | None
    n: int
    n_scored: int
    pred_empty: int
    unknown_pred: int  # predicted words outside the lexicon


def run_bench(model: Any, model_name: str, suites: list[SuiteConfig], out: Path, extractor: Extractor,
              wheels: list[Path] | None = None, seed: int = 0) -> list[Score]:
    """Describe and score every corpus of ``suites`` with ``model`` (``wheels``, when given, replace each
    suite's); results go to ``out/<suite>/<corpus>/``."""
    scores = []
    for suite in suites:
        for corpus in suite.corpora:
            cfg = EvalConfig(**suite.generation(), limit=suite.limit, gt_source=corpus.gt_source,
                             bootstrap=suite.bootstrap, seed=seed, task=corpus.task,
                             wheels=list(wheels or suite.wheels))
            log.info("bench %s: %s/%s (%s)", model_name, suite.name, corpus.name, corpus.task)
            m = evaluate_split(model, suite.shards(corpus), out / suite.name / corpus.name, cfg, extractor,
                               model_name=model_name)["model"]
            scores.append(Score(model_name, suite.name, corpus.name, corpus.task, PRIMARY[corpus.task],
                                m["primary"], m["n"], m["n_scored"], m["pred_empty"],
                                sum(m["unknown_labels"]["pred"].values())))
    return scores


def mean_primary(scores: list[Score]) -> float | None:
    values = [s.value for s in scores if s.value is not None]
    return sum(values) / len(values) if values else None


def tracker_metrics(scores: list[Score]) -> dict[str, float]:
    """MLflow keys of one model's bench run: ``bench/<corpus>/<primary metric>`` and ``bench/mean``."""
    out = {f"bench/{s.corpus}/{s.metric.replace('/', '_')}": s.value for s in scores if s.value is not None}
    out.update({f"bench/{s.corpus}/n_scored": float(s.n_scored) for s in scores})
    mean = mean_primary(scores)
    if mean is not None:
        out["bench/mean"] = mean
    return out


def write_report(scores: list[Score], out: Path) -> str:
    """``bench.json`` and ``bench.md`` (rows: corpora; columns: models; last row: the mean); returns the
    Markdown table."""
    models = list(dict.fromkeys(s.model for s in scores))
    corpora = list(dict.fromkeys((s.suite, s.corpus, s.task, s.metric) for s in scores))
    by_key = {(s.model, s.suite, s.corpus): s for s in scores}
    lines = ["| suite | corpus | task | metric | " + " | ".join(models) + " |",
             "|---|---|---|---|" + "---|" * len(models)]
    for suite, corpus, task, metric in corpora:
        cells = []
        for model in models:
            s = by_key.get((model, suite, corpus))
            cells.append("-" if s is None or s.value is None else f"{s.value:.3f} (n={s.n_scored})")
        lines.append(f"| {suite} | {corpus} | {task} | {metric} | " + " | ".join(cells) + " |")
    means = [mean_primary([s for s in scores if s.model == m]) for m in models]
    lines.append("| **mean** | | | primary | " + " | ".join("-" if v is None else f"**{v:.3f}**" for v in means) + " |")
    table = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"scores": [asdict(s) for s in scores], "mean": dict(zip(models, means, strict=True))}
    write_atomic(out / BENCH_JSON, json.dumps(summary, indent=2) + "\n", durable=False)
    write_atomic(out / BENCH_MD, table + "\n", durable=False)
    return table

