"""Write a synthetic EMER corpus in the layout of a real release:

    OUT/videos/<name>.mp4     H.264 video of a drawn face + AAC voice-like audio
    OUT/coarse.csv            EMER-Coarse style: short automatic descriptions, noisy labels
    OUT/fine.csv              EMER-Fine style: multi-clue reasoning descriptions, clean labels
    OUT/val.csv               EMER-Fine style clips held out of fine.csv, to select checkpoints on
    OUT/test.csv              held-out clips, EMER-Fine style, for evaluation
    OUT/test_discrete.csv     with ``task_variants``: the test clips labelled with their one base emotion
    OUT/test_sentiment.csv    ... and with its valence (positive / negative / neutral), for the benchmark tasks

All CSVs have columns ``name,subtitle,description,labels`` (labels comma-separated). Every sample draws from
its own RNG seeded by (seed, index), so the corpus is byte-identical for a seed whatever the worker count, and
an interrupted run resumes: finished videos are kept (each is written under a temporary name and renamed).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from affectgpt.atomic import atomic_path, write_atomic
from affectgpt.media import write_clip
from affectgpt.synth.emotions import BASE_WEIGHTS, BASES, CUE_JITTER, VOCABULARY, Cues
from affectgpt.synth.face import Identity, render_face
from affectgpt.synth.text import coarse_description, fine_description, subtitle
from affectgpt.synth.voice import synthesize_voice

log = logging.getLogger(__name__)

CSV_COLUMNS = ("name", "subtitle", "description", "labels")
SPLITS = ("coarse", "fine", "val", "test")


@dataclass(frozen=True)
class SynthConfig:
    """Settings of ``affectgpt synth``.

    out: output corpus directory
    num: number of clips
    seed: random seed
    fps: video frame rate
    seconds: clip length in seconds
    size: frame width and height in pixels
    sample_rate: stored audio rate; the pack job resamples to the model's rate, as for real clips
    label_noise: wrong-label rate of coarse.csv
    fine_fraction: share of clips with fine-style descriptions, fine.csv and val.csv together (600 clips: 96
        fine + 24 val; Stage 2 of the tiny demo backbones needs ~90 fine clips to improve on Stage 1)
    val_fraction: share of the fine clips held out as val.csv (the validation split)
    test_fraction: share of clips in test.csv
    mixed_fraction: share of clips that carry a second, weaker emotion
    workers: parallel processes
    task_variants: also write test_discrete.csv and test_sentiment.csv (benchmark tasks)
    """

    out: Path
    num: int = 200
    seed: int = 0
    fps: int = 8
    seconds: float = 3.0
    size: int = 224
    sample_rate: int = 22050
    label_noise: float = 0.25
    fine_fraction: float = 0.2
    val_fraction: float = 0.2
    test_fraction: float = 0.15
    mixed_fraction: float = 0.15
    workers: int = 1
    task_variants: bool = False

    def __post_init__(self) -> None:
        if self.num < 1:
            raise ValueError(f"num must be >= 1, got {self.num}")
        if not 0 <= self.label_noise <= 1:
            raise ValueError(f"label_noise must be in [0, 1], got {self.label_noise}")
        if self.fine_fraction < 0 or self.test_fraction < 0 or self.fine_fraction + self.test_fraction > 1:
            raise ValueError("fine_fraction and test_fraction must be >= 0 and sum to at most 1")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.fps < 1 or self.seconds <= 0 or self.size < 32:
            raise ValueError("fps >= 1, seconds > 0 and size >= 32 are required")

    def split_sizes(self) -> dict[str, int]:
        fine = round(self.num * self.fine_fraction)
        val = round(fine * self.val_fraction)
        test = round(self.num * self.test_fraction)
        return {"coarse": self.num - fine - test, "fine": fine - val, "val": val, "test": test}


@dataclass(frozen=True)
class Sample:
    name: str
    split: str
    base: str
    labels: list[str]  # the true labels
    noisy_labels: list[str]  # what automatic pre-labelling wrote (coarse split only differs)
    subtitle: str
    cues: Cues
    identity: Identity


def jitter(cues: Cues, rng: np.random.Generator) -> Cues:
    """Perturb every cue by CUE_JITTER times the spread of that cue across emotions."""
    values = {}
    for f in dataclasses.fields(Cues):
        column = [getattr(c, f.name) for c in BASES.values()]
        spread = max(column) - min(column)
        values[f.name] = getattr(cues, f.name) + rng.normal(0, CUE_JITTER * spread)
    values["rate"] = max(values["rate"], 1.2)
    values["pitch"] = max(values["pitch"], 80.0)
    values["energy"] = float(np.clip(values["energy"], 0.05, 1.0))
    values["eye_open"] = float(np.clip(values["eye_open"], 0.15, 1.0))
    values["mouth_open"] = float(np.clip(values["mouth_open"], 0.0, 1.0))
    values["head_speed"] = max(values["head_speed"], 0.05)
    values["head_amp"] = max(values["head_amp"], 0.0)
    values["tremor"] = max(values["tremor"], 0.0)
    return Cues(**values)


def blend(a: Cues, b: Cues, weight_b: float) -> Cues:
    return Cues(**{
        f.name: (1 - weight_b) * getattr(a, f.name) + weight_b * getattr(b, f.name) for f in dataclasses.fields(Cues)
    })


def pick_labels(base: str, rng: np.random.Generator) -> list[str]:
    words = VOCABULARY[base]
    count = int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))
    weights = np.array([1.0 / (i + 1) for i in range(len(words))])
    chosen = rng.choice(len(words), size=min(count, len(words)), replace=False, p=weights / weights.sum())
    return [words[i] for i in sorted(chosen)]


def plan_sample(cfg: SynthConfig, index: int, split: str) -> Sample:
    rng = np.random.default_rng([cfg.seed, index])
    bases = list(BASE_WEIGHTS)
    probs = np.array([BASE_WEIGHTS[b] for b in bases])
    base = str(rng.choice(bases, p=probs / probs.sum()))
    cues = BASES[base]
    labels = pick_labels(base, rng)
    if rng.random() < cfg.mixed_fraction:
        other = str(rng.choice([b for b in bases if b not in (base, "neutral")]))
        cues = blend(cues, BASES[other], 0.3)
        labels = labels[:2] + [VOCABULARY[other][0]]
    noisy = labels
    if split == "coarse" and rng.random() < cfg.label_noise:
        wrong = str(rng.choice([b for b in bases if b != base]))
        noisy = pick_labels(wrong, rng)
    return Sample(
        name=f"sample_{index:08d}",
        split=split,
        base=base,
        labels=labels,
        noisy_labels=noisy,
        subtitle=subtitle(base, rng),
        cues=jitter(cues, rng),
        identity=Identity.sample(rng),
    )


def render_sample(cfg: SynthConfig, sample: Sample, video_path: Path) -> None:
    rng = np.random.default_rng([cfg.seed, int(sample.name.split("_")[1]), 1])
    frames = render_face(sample.cues, sample.identity, int(cfg.fps * cfg.seconds), cfg.size, cfg.fps, rng)
    audio = synthesize_voice(sample.cues, sample.identity.pitch_offset, cfg.seconds, cfg.sample_rate, rng)
    with atomic_path(video_path, durable=False) as tmp:
        write_clip(tmp, frames, cfg.fps, audio, cfg.sample_rate)


def describe(sample: Sample, rng: np.random.Generator) -> dict[str, str]:
    if sample.split == "coarse":
        description = coarse_description(sample.cues, sample.noisy_labels, rng)
    else:
        description = fine_description(sample.cues, sample.subtitle, sample.labels, rng)
    return {
        "name": sample.name,
        "subtitle": sample.subtitle,
        "description": description,
        "labels": ",".join(sample.noisy_labels),
    }


def _make(args: tuple[SynthConfig, int, str]) -> dict[str, str]:
    cfg, index, split = args
    sample = plan_sample(cfg, index, split)
    video = cfg.out / "videos" / f"{sample.name}.mp4"
    if not video.exists():
        render_sample(cfg, sample, video)
    return describe(sample, np.random.default_rng([cfg.seed, index, 2]))


def write_corpus(cfg: SynthConfig) -> dict[str, int]:
    """Generate the corpus; returns the number of rows per split CSV."""
    (cfg.out / "videos").mkdir(parents=True, exist_ok=True)
    sizes = cfg.split_sizes()
    order = np.random.default_rng(cfg.seed).permutation(cfg.num)
    split_of = np.empty(cfg.num, dtype=object)
    start = 0
    for split in SPLITS:
        split_of[order[start : start + sizes[split]]] = split
        start += sizes[split]
    jobs = [(cfg, i, str(split_of[i])) for i in range(cfg.num)]
    rows: dict[str, list[dict[str, str]]] = {s: [] for s in SPLITS}
    results = _run(jobs, cfg.workers)
    for (_, _, split), row in tqdm(zip(jobs, results, strict=True), total=cfg.num, desc="synth", unit="clip"):
        rows[split].append(row)
    if cfg.task_variants:
        rows.update(task_variants(cfg, rows["test"]))
    for split, split_rows in rows.items():
        write_csv(cfg.out / f"{split}.csv", split_rows)
    return {s: len(r) for s, r in rows.items()}


def task_variants(cfg: SynthConfig, test_rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """The test clips relabelled for the discrete task (the base emotion's word) and for the sentiment task
    (that word's valence in the lexicon); names, videos, subtitles and descriptions stay the same."""
    from affectgpt.eval.lexicon import default_lexicon

    lexicon = default_lexicon()
    discrete, sentiment = [], []
    for row in test_rows:
        word = VOCABULARY[plan_sample(cfg, int(row["name"].split("_")[1]), "test").base][0]
        discrete.append({**row, "labels": word})
        sentiment.append({**row, "labels": lexicon.normalise(word).valence})
    return {"test_discrete": discrete, "test_sentiment": sentiment}


def _run(jobs: list[tuple[SynthConfig, int, str]], workers: int):
    if workers == 1:
        yield from map(_make, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(_make, jobs, chunksize=4)


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    """Write atomically: a half-written CSV never appears under its final name."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue(), durable=False)
