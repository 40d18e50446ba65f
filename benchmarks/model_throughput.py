"""Model throughput on this CPU: forward+backward tokens/s, MFU, and padding waste of padded vs packed batches.

  .venv/bin/python benchmarks/model_throughput.py [--zoo models] [--corpus DIR] [--backbones llama-tiny smollm2-135m]

1. Peak: the best fp32 matmul rate (2048 x 2048, all threads), measured here before and after the timed
   steps, is the MFU denominator.
2. For each backbone (with the zoo's CLIP-tiny and Whisper-tiny encoders, Q-Former fusion): one micro-batch of
   decoded synthetic clips, timed forward+backward, padded and packed, and padded once more through the LLM's
   own ``labels=`` loss (the baseline: the LM head over every position, where AffectGPT.forward projects only
   the description's targets). tokens/s counts real (non-padding) LLM tokens. Model FLOPs = 6 x N x tokens +
   6 x H x targets + attention, N = trainable LLM matmul parameters but the head, H = the head's (the input
   embedding is a lookup: counted only when tied, as the output head), attention = 12 x layers x hidden x sum(len^2) / 2
   per step (fwd+bwd of QK^T and AV, causal half). The frozen encoders and adapters are not counted.
   On CPU, SDPA/eager attend over the whole packed row under a block-diagonal mask (sum(len)^2 scores, not
   sum(len^2)), so packing saves the padded MLP/head work but not attention; FlashAttention-2's varlen kernel
   (GPU) saves both.
3. Padding waste over the whole synthetic corpus (all splits, shuffled into micro-batches): the share of padded
   tokens in padded batches, and how many tokens packed batches need relative to padded ones.
The zoo entries used are built into --zoo if missing (SmolLM2's GGUF conversion takes ~30 s once).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from affectgpt.config import from_dict
from affectgpt.corpus import read_split
from affectgpt.media import decode_clip
from affectgpt.model import AffectGPT, AffectGPTConfig
from affectgpt.model.zoo import build_zoo
from affectgpt.synth.corpus_writer import SPLITS, SynthConfig, write_corpus
from affectgpt.train.session import target_tokens

log = logging.getLogger("model_throughput")


def matmul_peak(n: int = 2048, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def model_flops(model: AffectGPT, lengths: list[int], targets: int) -> float:
    llm = model.llm
    text = llm.config.get_text_config()
    head = llm.get_output_embeddings().weight.numel()
    n = sum(p.numel() for p in llm.parameters() if p.requires_grad) - head
    if not text.tie_word_embeddings:
        n -= llm.get_input_embeddings().weight.numel()
    attention = 12 * text.num_hidden_layers * text.hidden_size * sum(k * k for k in lengths) / 2
    return 6 * n * sum(lengths) + 6 * head * targets + attention


def full_head_loss(model: AffectGPT, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The same loss through the LLM's ``labels=`` path: logits at every position (the baseline)."""
    embeds = model.embed(batch["input_ids"], batch.get("frames"), batch.get("has_video"), batch.get("audio"),
                         batch.get("audio_lengths"), batch.get("has_audio"))
    return model.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"],
                     use_cache=False).loss


def time_step(model: AffectGPT, batch: dict[str, torch.Tensor], repeats: int, loss=None) -> float:
    """Best wall time of forward+backward (gradients cleared between steps, no optimizer)."""
    loss = loss or (lambda b: model(**b).loss)
    best = float("inf")
    for i in range(repeats + 1):  # the first step warms up allocators and kernels
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss(batch).backward()
        if i:
            best = min(best, time.perf_counter() - start)
    return best


def throughput(zoo: Path, backbone: str, samples: list[dict], repeats: int) -> dict[str, float]:
    """Seconds per forward+backward step, padded and packed, plus the step's tokens and model FLOPs."""
    cfg = from_dict(AffectGPTConfig, {
        "llm": str(zoo / "llm" / backbone), "attn_implementation": "sdpa", "max_audio_seconds": 4.0,
        "video": {"encoder": str(zoo / "video/clip-tiny")}, "audio": {"encoder": str(zoo / "audio/whisper-tiny")},
    })
    torch.manual_seed(0)
    model = AffectGPT.from_config(cfg).train()
    padded = model.collator()(samples)
    lengths = padded["attention_mask"].sum(1).tolist()
    targets = target_tokens(padded)
    torch.testing.assert_close(model(**padded).loss, full_head_loss(model, padded))
    return {
        "padded": time_step(model, padded, repeats),
        "packed": time_step(model, model.collator(packed=True)(samples), repeats),
        "full head": time_step(model, padded, repeats, lambda b: full_head_loss(model, b)),
        "tokens": sum(lengths), "targets": targets, "width": padded["input_ids"].shape[1],
        "flops": model_flops(model, lengths, targets),
        "params": model.parameter_summary(),
    }


def report(backbone: str, r: dict, batch_size: int, peak: float) -> None:
    for name in ("padded", "packed"):
        seconds = r[name]
        print(f"  {backbone:14s} {name}: {r['tokens'] / seconds:8.0f} tokens/s  step {seconds * 1e3:8.1f} ms  "
              f"MFU {r['flops'] / seconds / peak:6.1%}  (batch {batch_size} x {r['width']} padded, "
              f"{r['tokens']} real tokens)")
    print(f"  {backbone:14s} packed/padded speed: {r['padded'] / r['packed']:.2f}x  ({r['params']})")
    print(f"  {backbone:14s} head on the {r['targets']} targets vs on all {r['tokens']} tokens (full head "
          f"{r['full head'] * 1e3:.1f} ms): {r['full head'] / r['padded']:.2f}x faster")


def padding_waste(zoo: Path, corpus: Path, batch_size: int, seed: int) -> None:
    cfg = from_dict(AffectGPTConfig, {"llm": str(zoo / "llm/llama-tiny"),
                                      "video": {"encoder": str(zoo / "video/clip-tiny")},
                                      "audio": {"encoder": str(zoo / "audio/whisper-tiny")}})
    prompt = AffectGPT.from_config(cfg).collator().prompt
    records = [r for split in SPLITS for r in read_split(corpus, split, require_video=False)]
    pairs = prompt.encode([r.subtitle for r in records], [r.description for r in records])
    lengths = np.array([len(ids) for ids, _ in pairs])
    lengths = lengths[np.random.default_rng(seed).permutation(len(lengths))]
    batches = [lengths[i:i + batch_size] for i in range(0, len(lengths), batch_size)]
    padded = sum(len(b) * b.max() for b in batches)
    real = int(lengths.sum())
    print(f"  {len(records)} samples, lengths {lengths.min()}-{lengths.max()} (mean {lengths.mean():.0f}), "
          f"micro-batch {batch_size}")
    print(f"  padded batches: {padded} tokens, {1 - real / padded:.1%} padding")
    print(f"  packed batches: {real} tokens, 0.0% padding  -> packed/padded tokens {real / padded:.2f} "
          f"({padded / real:.2f}x fewer)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", type=Path, default=Path("models"), help="model zoo (default: models)")
    p.add_argument("--corpus", type=Path, help="existing synthetic corpus (default: synthesize --num clips)")
    p.add_argument("--num", type=int, default=120, help="clips to synthesize (default: 120)")
    p.add_argument("--batch-size", type=int, default=8, help="micro-batch size (default: 8)")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per layout (default: 3)")
    p.add_argument("--backbones", nargs="+", default=["llama-tiny", "smollm2-135m"])
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    build_zoo(args.zoo, only=[*(f"llm/{b}" for b in args.backbones), "llm/llama-tiny", "video/clip-tiny",
                              "audio/whisper-tiny"])
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus or Path(tmp) / "corpus"
        if args.corpus is None:
            write_corpus(SynthConfig(out=corpus, num=args.num, workers=2))
        records = read_split(corpus, "coarse")[: args.batch_size]
        samples = []
        for r in records:
            clip = decode_clip(r.video, num_frames=8, size=224, sample_rate=16000, max_audio_seconds=4.0)
            audio = clip.audio if clip.audio is not None else np.zeros(0, np.float32)
            samples.append({"name": r.name, "frames": clip.frames, "audio": audio, "has_audio": clip.audio is not None,
                            "subtitle": r.subtitle, "description": r.description, "labels": r.labels,
                            "split": "coarse"})

        # Other processes share these cores: the peak is the best of measurements before and after the runs.
        peak = matmul_peak()
        results = {backbone: throughput(args.zoo, backbone, samples, args.repeats) for backbone in args.backbones}
        peak = max(peak, matmul_peak())
        print(f"CPU fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads)")
        print("forward+backward (real tokens/s; MFU against the peak above):")
        for backbone, r in results.items():
            report(backbone, r, len(samples), peak)
        print("padding waste on the synthetic corpus (llama-tiny tokenizer):")
        padding_waste(args.zoo, corpus, args.batch_size, seed=0)


if __name__ == "__main__":
    main()
