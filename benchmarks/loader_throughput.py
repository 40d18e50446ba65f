"""Model-ready samples per second on the path training takes, against today's collator and the mp4 files.

  .venv/bin/python benchmarks/loader_throughput.py [--config configs/stage1.yaml] [--num 160] [--epochs 2]
      [--rounds 3] [--world-size 2] [--train-steps 8] [--corpus DIR] [--work work/bench]

The batches are built as ``launcher/train.py`` builds them: the training config's model recipe, its
``micro_batch_size``, its loader (``AffectGPTJob.batches``: worker count as ``data.workers`` resolves on this
device, rank 0 of ``--world-size`` ranks) and ``model.collator(train=True)``. "Model-ready" means the encoders'
inputs: the new path's preprocessing runs inside the model (``affectgpt.model.preprocess``), on the training
device; with no GPU here it runs on this CPU and its time is counted. The same clips (synthesized into --work
unless --corpus) are packed twice, at the recipe's ``frame_size`` (as ``make demo`` packs them now) and at 224 px
(as it packed them before). Paths:

  before        224-px shards, the collator as it was: the HF image processor and feature extractor per
                sample, each prompt rendered and tokenised alone, in the loader's workers (1 worker, and 0)
  shards        the shards at the recipe's size + ``model.collator`` + the model's batched preprocessing, with
                ``data.workers=auto`` and with the other choice; also the 224-px shards (resized in the model),
                and the old collator on the new shards (what the storage size alone gives)
  mp4           decode each mp4 as ``affectgpt describe`` does (``clip_sample``), then the same collator and
                preprocessing: the same batches without shards

Then where the CPU time of one sample goes, stage by stage, and the training step's own rate (forward,
backward, AdamW, one process) for the config's recipe and SmolLM2-135M, to show which side is the bottleneck.
Rates are by the wall clock and per CPU-second (this process and its loader workers); on a shared machine the
wall clock measures the neighbours' load as much as the code, so the ratios use CPU-seconds, and every path is
measured in ``--rounds`` turns interleaved with the others (its rate is over all of them). Torch runs
``cores / world size`` threads, as each rank of a training job on this machine would.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
import torch

from affectgpt.config import load_config
from affectgpt.corpus import scan_csv
from affectgpt.model import AffectGPT
from affectgpt.model.affectgpt import load_recipe
from affectgpt.model.collator import Collator
from affectgpt.model.prompt import (
    AUDIO_TOKEN,
    FUSION_TOKEN,
    IGNORE_INDEX,
    PLACEHOLDER_TOKENS,
    PLAIN_TEMPLATE,
    VIDEO_TOKEN,
)
from affectgpt.packing import clip_sample, pack_split
from affectgpt.synth.corpus_writer import SynthConfig, write_corpus
from affectgpt.train.components import AffectGPTJob, loader_workers, model_config
from affectgpt.train.config import TrainConfig
from shards.index import read_index
from shards.loader import _read_shard
from shards.schema import PackConfig, decode_sample

log = logging.getLogger("loader_throughput")
SMOLLM2 = Path("configs/models/smollm2-135m.yaml")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=Path("configs/stage1.yaml"), help="training config")
    p.add_argument("--corpus", type=Path, help="existing corpus (default: synthesize one)")
    p.add_argument("--num", type=int, default=160, help="clips to synthesize (default: 160)")
    p.add_argument("--epochs", type=int, default=2, help="loader epochs per shard path and round (default: 2)")
    p.add_argument("--rounds", type=int, default=3, help="rounds over all paths, interleaved (default: 3)")
    p.add_argument("--world-size", type=int, default=2, help="training ranks; rank 0 is measured (default: 2)")
    p.add_argument("--train-steps", type=int, default=8, help="timed training steps per recipe (default: 8)")
    p.add_argument("--work", type=Path, default=Path("work/bench"), help="scratch dir (default: work/bench)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(max(1, os.cpu_count() // args.world_size))
    load_recipe(SMOLLM2, Path.cwd())  # its zoo entries are needed at the end: say so now, not after the loader runs

    corpus = args.corpus or args.work / f"corpus-{args.num}"
    if args.corpus is None and not (corpus / "coarse.csv").is_file():
        write_corpus(SynthConfig(out=corpus, num=args.num, fine_fraction=0, test_fraction=0, workers=2))
    records, _ = scan_csv(corpus / "coarse.csv", corpus)
    cfg = load_config(TrainConfig, args.config)
    model = AffectGPT.from_config(model_config(cfg))
    size = model.config.frame_size
    # The shards as the demo packs them (at the recipe's frame size), and at 224 px as they were packed before.
    shards = {px: _pack(corpus, args.work / f"shards-{corpus.name}-{px}px", px) for px in sorted({size, 224})}
    cfg = replace(cfg, data=replace(cfg.data, shards=shards[size]))
    workers = loader_workers(cfg.data.workers, on_cuda=False)
    prepare_inputs = _Preprocess(model)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
          f"{len(records)} clips; {args.config}: {cfg.model.recipe}, micro batch {cfg.micro_batch_size}, "
          f"data.workers={cfg.data.workers} (-> {workers} here), rank 0 of {args.world_size}")

    def shard_path(n_workers: int, collate: Callable | None = None, px: int = size) -> Iterable[Any]:
        """Epochs of the training loader (``AffectGPTJob.batches``) with this many workers over the shards of
        ``px`` pixels; ``collate`` replaces the model's collator."""
        data = replace(cfg.data, workers=n_workers, shards=shards[px])
        loader = AffectGPTJob(replace(cfg, data=data)).batches(model, rank=0, world_size=args.world_size)
        loader.collate_fn = collate or loader.collate_fn
        return (b for _ in range(args.epochs) for b in loader)

    hf = HFCollator(model.collator(train=True), model.image_processor, model.feature_extractor)
    counts = sorted({0, 1, workers})
    paths = {
        "before: hf collator, 224 px, 1 worker (stage1.yaml's then)": (lambda: shard_path(1, hf, 224), None),
        "before: hf collator, 224 px, 0 workers": (lambda: shard_path(0, hf, 224), None),
        **{f"shards, {size} px, {n} worker(s){' (data.workers=auto)' if n == workers else ''}":
           (lambda n=n: shard_path(n), prepare_inputs) for n in counts},
        "shards, 224 px (resized in the model), 0 workers": (lambda: shard_path(0, None, 224), prepare_inputs),
        f"hf collator, {size} px, 0 workers": (lambda: shard_path(0, hf), None),
        f"mp4 decode ({size} px), 1 process": (lambda: _mp4_batches(records, model, cfg.micro_batch_size),
                                               prepare_inputs),
    }
    rows = _measure_rounds(paths, args.rounds)
    new = {n: rows[name] for n, name in zip(counts, [k for k in rows if k.startswith(f"shards, {size} px")],
                                            strict=True)}
    # Today's path at its better worker count; the new path at its better one (the default where they agree).
    before = max((v for k, v in rows.items() if k.startswith("before")), key=lambda r: r.cpu)
    mp4 = rows[f"mp4 decode ({size} px), 1 process"]
    print("\nmodel-ready samples (encoder inputs), rank 0:  samples/s wall | per CPU-s | x before | x mp4 "
          "(ratios per CPU-s)")
    for name, rate in rows.items():
        print(f"  {name:<52} {rate.wall:7.1f} | {rate.cpu:7.1f} | {rate.cpu / before.cpu:5.2f}x | "
              f"{rate.cpu / mp4.cpu:5.2f}x")
    best = max((v for k, v in rows.items() if k.startswith(f"shards, {size} px")), key=lambda r: r.cpu)
    print(f"new path vs before: {best.cpu / before.cpu:.1f}x per CPU-s (target >= 5x); "
          f"vs mp4 -> the same batch: {best.cpu / mp4.cpu:.1f}x (target >= 10x)")

    print("\nwhere the CPU time of one sample goes (ms, one process):")
    stages = {}
    for px in sorted(shards, reverse=True):
        stages.update({f"{name} [{px} px]": ms for name, ms in _stages(shards[px], model, hf,
                                                                     cfg.micro_batch_size).items()})
    stages["mp4 decode (PyAV, clip_sample)"] = _mp4_ms(records[:40], model)
    stages["worker transport (1 worker minus 0, per sample)"] = 1e3 / new[1].cpu - 1e3 / new[0].cpu
    for name, ms in stages.items():
        print(f"  {name:<52} {ms:7.3f}")

    print("\ntraining step consumption (forward + backward + AdamW, one process, fp32, micro batch "
          f"{cfg.micro_batch_size}):")
    samples = [b for _, b in zip(range(args.train_steps + 2), shard_path(0, list), strict=False)]
    for recipe, trained in ((cfg.model.recipe, model), (SMOLLM2, None)):
        trained = trained or AffectGPT.from_config(load_recipe(recipe, Path.cwd()))
        step = _train_rate(trained, [trained.collator(train=True)(s) for s in samples])
        side = "the model" if step < best.wall else "the loader"
        print(f"  {recipe}: {step:.3g} samples/s per rank; the loader delivers {best.wall:.1f}/s by the wall "
              f"clock ({best.cpu:.1f} per CPU-s): {side} is the bottleneck")


@dataclass
class HFCollator:
    """The collator as it was before the model preprocessed its inputs: the HF processors, sample by sample, and
    the prompts rendered and tokenised one by one (three tokenizer calls and a chat-template render per sample;
    the same ids as ``PromptBuilder``'s batches, ``tests/model/test_prompt.py``)."""

    text: Collator
    processor: Any
    extractor: Any

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.tokenise(samples)
        frames = [frame for s in samples for frame in s["frames"]]
        pixels = self.processor(images=frames, return_tensors="pt", input_data_format="channels_last")
        batch["pixel_values"] = pixels["pixel_values"].unflatten(0, (len(samples), -1))
        waves = [np.asarray(s["audio"], np.float32)[: self.text.audio.max_samples] for s in samples]
        padding = {} if hasattr(self.extractor, "n_samples") else {"padding": "longest"}
        feats = self.extractor(waves, sampling_rate=self.text.audio.sample_rate, return_tensors="pt", **padding)
        batch["audio_values"] = feats[self.extractor.model_input_names[0]]
        batch["has_video"] = torch.tensor([len(s["frames"]) > 0 for s in samples])
        batch["has_audio"] = torch.tensor([bool(s["has_audio"]) for s in samples])
        return batch


    def tokenise(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pairs = [self._encode(s["subtitle"], s["description"]) for s in samples]
        batch = _pad([ids for ids, _ in pairs], self.text.prompt.pad_id)
        batch["labels"] = _pad([labels for _, labels in pairs], IGNORE_INDEX)["input_ids"]
        return batch

    def _encode(self, subtitle: str, description: str) -> tuple[list[int], list[int]]:
        b, tok = self.text.prompt, self.text.prompt.tokenizer
        for token in PLACEHOLDER_TOKENS:
            subtitle = subtitle.replace(token, "")
        ids = tok(subtitle, add_special_tokens=False)["input_ids"]
        subtitle = subtitle if len(ids) <= b.max_subtitle_tokens else tok.decode(ids[: b.max_subtitle_tokens])
        lines = [f"{label}: {token * n}" for label, token, n in (("Video", VIDEO_TOKEN, b.num_video),
                 ("Audio", AUDIO_TOKEN, b.num_audio), ("Audio-visual", FUSION_TOKEN, b.num_fusion)) if n]
        user = "\n".join([*lines, f"Subtitle: {subtitle}", b.instruction])
        template = b.chat_template or tok.chat_template or PLAIN_TEMPLATE
        text = tok.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True,
                                       tokenize=False, chat_template=template)
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        target = tok(description, add_special_tokens=False)["input_ids"][: b.max_description_tokens] + [b.eos_id]
        return prompt + target, [IGNORE_INDEX] * len(prompt) + target


def _pad(seqs: list[list[int]], value: int) -> dict[str, torch.Tensor]:
    """Right padding as the collator padded, row by row."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask}


class _Preprocess:
    """The model's own preprocessing of a collated batch (what ``AffectGPT.embed`` runs before the encoders)."""

    def __init__(self, model: AffectGPT):
        self.video, self.audio = model.video.encoder, model.audio.encoder

    def __call__(self, batch: dict[str, torch.Tensor]) -> None:
        self.video.preprocess(batch["frames"])
        self.audio.features(batch["audio"], batch["audio_lengths"])


@dataclass(frozen=True)
class _Rate:
    wall: float
    cpu: float


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (finished DataLoader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _measure_rounds(paths: dict[str, tuple[Callable[[], Iterable[dict[str, torch.Tensor]]], Callable | None]],
                    rounds: int) -> dict[str, _Rate]:
    """Each path's rate over ``rounds`` passes, the paths taking turns, so that a neighbour's burst of load on
    the shared machine falls on all of them alike rather than on whichever ran then."""
    totals = {name: [0, 0.0, 0.0] for name in paths}
    for _ in range(rounds):
        for name, (batches, prepare) in paths.items():
            wall, cpu = time.perf_counter(), _cpu()
            for batch in batches():
                if prepare is not None:
                    prepare(batch)
                totals[name][0] += len(batch["has_video"])
            totals[name][1] += time.perf_counter() - wall
            totals[name][2] += _cpu() - cpu
    return {name: _Rate(count / wall, count / cpu) for name, (count, wall, cpu) in totals.items()}


def _mp4_batches(records, model: AffectGPT, batch_size: int) -> Iterable[dict[str, torch.Tensor]]:
    collate = model.collator(train=True)
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        samples = [{**clip_sample(r.video, model.config, r.subtitle), "description": r.description} for r in chunk]
        yield collate(samples)


def _stages(shards: Path, model: AffectGPT, hf: HFCollator, batch_size: int) -> dict[str, float]:
    """CPU milliseconds per sample of each stage, timed alone over every sample of the shards."""
    timings: dict[str, float] = {}

    def timed(name: str, work: Callable[[], Any], count: int) -> Any:
        start = time.process_time()
        out = work()
        timings[name] = (time.process_time() - start) * 1e3 / count
        return out

    index = read_index(str(shards))
    files = [(f"{shards}/{s.file}", s.samples) for s in index.shards]
    raw = [s for url, count in files for s in _read_shard(url, count, "fail")]
    n = len(raw)
    timed("read tar members", lambda: [s for url, count in files for s in _read_shard(url, count, "fail")], n)
    members = [{k: v for k, v in s.items() if not k.startswith("__")} for s in raw]
    samples = timed("decode a sample (schema: JSON, JPEG, audio)", lambda: [
        decode_sample(m, index.config, "x") for m in members], n)
    timed("  of which the JPEG filmstrip", lambda: [simplejpeg.decode_jpeg(m["frames.jpg"], "RGB") for m in members], n)
    groups = [samples[i : i + batch_size] for i in range(0, n, batch_size)]
    collate = model.collator(train=True)
    timed("tokenise (collator text)", lambda: [collate.text(g) for g in groups], n)
    batches = timed("stack frames + pad audio (collator)", lambda: [
        {**collate.video(g), **collate.audio(g)} for g in groups], n)
    video, audio = model.video.encoder, model.audio.encoder
    timed("frame preprocessing (model, batched)", lambda: [video.preprocess(b["frames"]) for b in batches], n)
    timed("audio features (model, batched)", lambda: [audio.features(b["audio"], b["audio_lengths"])
                                                       for b in batches], n)
    timed("before: HF image processor (per frame)", lambda: [hf.processor(
        images=[f for s in g for f in s["frames"]], return_tensors="pt", input_data_format="channels_last")
        for g in groups], n)
    before = timed("before: tokenise (per sample)", lambda: [hf.tokenise(g) for g in groups], n)
    for old, g in zip(before, groups, strict=True):  # the baseline does the same work
        new = collate.text(g)
        if not all(torch.equal(old[k], new[k]) for k in ("input_ids", "attention_mask", "labels")):
            raise AssertionError(f"the per-sample prompts differ from the collator's for {[s['name'] for s in g]}")
    timed("before: HF feature extractor (per clip)", lambda: [hf(g) for g in groups], n)
    timings["before: HF feature extractor (per clip)"] -= timings["before: HF image processor (per frame)"] + \
        timings["before: tokenise (per sample)"]
    return timings


def _mp4_ms(records, model: AffectGPT) -> float:
    start = time.process_time()
    for record in records:
        clip_sample(record.video, model.config)
    return (time.process_time() - start) * 1e3 / len(records)


def _train_rate(model: AffectGPT, batches: list[dict[str, torch.Tensor]]) -> float:
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for i, batch in enumerate(batches):
        if i == 2:  # two warm-up steps (allocator, first-call costs)
            start, count = time.perf_counter(), 0
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if i >= 2:
            count += len(batch["has_video"])
    model.eval()
    return count / (time.perf_counter() - start)


def _pack(corpus: Path, out: Path, size: int) -> Path:
    """The coarse split packed as the pack job packs it (``--size``, 32 samples per shard)."""
    out = out.resolve()
    if not (out / "index.json").is_file():
        pack_split(corpus, "coarse", str(out), PackConfig(size=size, samples_per_shard=32), progress=False)
    return out


if __name__ == "__main__":
    main()
