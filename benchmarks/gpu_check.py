"""The GPU path in one call (``benchmarks/gpu_check.sh`` runs it): bf16 training steps, padded and packed, the
attention backend the project selects, generation, tokens/s and MFU against the matmul peak measured here.

  python benchmarks/gpu_check.py --zoo ZOO --out OUT            # on a GPU (world size 1, plain torch)
  python benchmarks/gpu_check.py --zoo ZOO --out OUT --dry-run  # the same steps on CPU at toy size

ZOO is a model zoo holding llm/qwen2-tiny, video/clip-tiny and audio/whisper-tiny (``affectgpt zoo build``;
built where the project is installed and carried, as the GPU machine lacks the zoo's tokenizer source). Two
models are trained: the tiny recipe, and a ~0.5B LLM built from Qwen2.5-0.5B's architecture (random weights,
the zoo's tokenizer) with the same encoders; ``--dry-run`` shrinks the second to a toy. For each: the padded
loss and the packed loss of one fixed batch before any update (equal within bf16 tolerance), a few AdamW steps
of each layout (tokens/s, FLOPs counted by torch, MFU), and a short generation. One table is printed and
written to OUT/gpu_check.md with the raw figures in OUT/gpu_check.json. Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

log = logging.getLogger("benchmarks.gpu_check")
# Qwen2.5-0.5B's architecture (config.json of the release): 494 M parameters with its 151,936-token vocabulary.
QWEN_05B = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
            "num_key_value_heads": 2, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
            "tie_word_embeddings": True, "vocab_size": 151936}
TOY = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
       "num_key_value_heads": 2, "vocab_size": 151936}
# bf16 keeps 8 mantissa bits: a mean token loss of ~12 agrees to ~1e-2 between two summation orders.
BF16_LOSS_RTOL = 2e-2


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", type=Path, required=True, help="model zoo with the tiny LLM and encoders")
    p.add_argument("--out", type=Path, required=True, help="where the table and the JSON go")
    p.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: the same steps, for CI")
    p.add_argument("--steps", type=int, default=None, help="timed steps per layout (default 5; dry run 1)")
    p.add_argument("--batch", type=int, default=None, help="samples per step (default 8; dry run 2)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from affectgpt.model.attention import resolve_attn_implementation
    from affectgpt.train.flops import matmul_peak_flops

    if not args.dry_run and not torch.cuda.is_available():
        log.error("no CUDA device: run with --dry-run for the CPU check")
        return 1
    device = torch.device("cpu" if args.dry_run else "cuda")
    steps = args.steps or (1 if args.dry_run else 5)
    batch_size = args.batch or (2 if args.dry_run else 8)
    args.out.mkdir(parents=True, exist_ok=True)
    # The large product whose rate MFU is quoted against (8192^3 on the GPU: the bf16 dense peak it reaches).
    peak = matmul_peak_flops(device, torch.bfloat16, size=256 if args.dry_run else 8192,
                             min_seconds=0.2 if args.dry_run else 2.0)
    backend = resolve_attn_implementation("auto")
    log.info("device %s, attention backend %s, bf16 matmul peak %.1f TFLOP/s", device, backend, peak / 1e12)
    rows = []
    large = ("toy-llm", TOY) if args.dry_run else ("qwen2.5-0.5b-arch", QWEN_05B)
    for name, llm in (("tiny", args.zoo / "llm" / "qwen2-tiny"), (large[0], _large_llm(args, large[1]))):
        rows.append(check_model(name, _recipe(args.zoo, llm, backend), device, steps, batch_size, peak))
    env = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
           "attention": backend, "peak_tflops": peak / 1e12, "dry_run": args.dry_run}
    table = to_markdown(rows, env)
    print(table)
    (args.out / "gpu_check.md").write_text(table + "\n", encoding="utf-8")
    (args.out / "gpu_check.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1), encoding="utf-8")
    failed = [r["model"] for r in rows if not (r["packed_equals_padded"] and r["generated"])]
    if failed:
        log.error("checks failed for %s", failed)
    return 1 if failed else 0


def _large_llm(args: argparse.Namespace, dims: dict) -> Path:
    """A Qwen2 directory with ``dims`` and the zoo's tokenizer (random weights are drawn at build time)."""
    from transformers import AutoConfig, AutoTokenizer

    out = args.out / "llm-large"
    source = args.zoo / "llm" / "qwen2-tiny"
    config = AutoConfig.from_pretrained(source)
    for key, value in dims.items():
        setattr(config, key, value)
    config.head_dim = dims["hidden_size"] // dims["num_attention_heads"]
    config.save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


def _recipe(zoo: Path, llm: Path, backend: str):
    from affectgpt.model import AffectGPTConfig, ModalityConfig

    return AffectGPTConfig(
        llm=llm, llm_init="random", dtype="bfloat16", attn_implementation=backend, num_frames=4, frame_size=32,
        max_audio_seconds=2.0,
        video=ModalityConfig(encoder=zoo / "video" / "clip-tiny", num_queries=8),
        audio=ModalityConfig(encoder=zoo / "audio" / "whisper-tiny", num_queries=8),
    )


def check_model(name: str, recipe, device: torch.device, steps: int, batch_size: int, peak: float) -> dict:
    from affectgpt.model import AffectGPT
    from affectgpt.train.flops import count_flops

    torch.manual_seed(0)
    model = AffectGPT.from_config(recipe).to(device).train()
    params = sum(p.numel() for p in model.parameters())
    samples = _samples(batch_size)
    batches = {packed: {k: v.to(device) for k, v in model.collator(train=True, packed=packed)(samples).items()}
               for packed in (False, True)}
    with torch.no_grad():
        losses = {packed: float(model(**batch).loss) for packed, batch in batches.items()}
    row = {"model": name, "params_m": params / 1e6, "attention": model.llm.config._attn_implementation,
           "loss_padded": losses[False], "loss_packed": losses[True],
           "packed_equals_padded": abs(losses[True] - losses[False]) <= BF16_LOSS_RTOL * abs(losses[False])}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    for packed, batch in batches.items():
        def step(batch: dict = batch) -> None:
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        _, flops = count_flops(step)  # also the warm-up step
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        seconds = (time.perf_counter() - start) / steps
        tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
        layout = "packed" if packed else "padded"
        row[f"{layout}_tokens_per_s"] = tokens / seconds
        row[f"{layout}_step_s"] = seconds
        row[f"{layout}_mfu"] = flops / seconds / peak
        row[f"{layout}_row_tokens"] = batch["input_ids"].numel()
    model.eval()
    texts = model.generate(samples[:2], max_new_tokens=8)
    row["generated"] = len(texts) == 2 and all(isinstance(t, str) for t in texts)
    if device.type == "cuda":
        row["max_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    log.info("%s: %s", name, row)
    return row


def _samples(n: int) -> list[dict]:
    """Fixed synthetic clips (docs/CONTRACTS.md shape) whose descriptions differ in length, as real ones do."""
    import numpy as np

    rng = np.random.default_rng(0)
    sentence = "The person raises their eyebrows and speaks quickly with a rising pitch, so the state is surprise."
    return [{"name": f"gpu_{i}", "frames": rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8),
             "audio": (0.1 * rng.standard_normal(32000)).astype(np.float32), "has_audio": True,
             "subtitle": "I did not expect to see you here today.", "description": " ".join([sentence] * (1 + i % 4))}
            for i in range(n)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def to_markdown(rows: list[dict], env: dict) -> str:
    dry = " [DRY RUN, CPU]" if env["dry_run"] else ""
    lines = [f"GPU check: {env['device']}, torch {env['torch']}, attention {env['attention']}, "
             f"bf16 matmul peak {env['peak_tflops']:.1f} TFLOP/s (measured here){dry}",
             "",
             "| model | params M | loss padded | loss packed | packed == padded | padded tok/s | packed tok/s "
             "| padded MFU | packed MFU | padding saved | generate |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        saved = 1 - r["packed_row_tokens"] / r["padded_row_tokens"]
        lines.append(f"| {r['model']} | {r['params_m']:.1f} | {r['loss_padded']:.4f} | {r['loss_packed']:.4f} | "
                     f"{'yes' if r['packed_equals_padded'] else 'NO'} | {r['padded_tokens_per_s']:.0f} | "
                     f"{r['packed_tokens_per_s']:.0f} | {r['padded_mfu']:.1%} | {r['packed_mfu']:.1%} | "
                     f"{saved:.1%} | {'ok' if r['generated'] else 'FAILED'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
