"""The GPU path in one call (``benchmarks/gpu_check.sh`` runs it): bf16 training of the tiny recipe and of a
~0.5B LLM, padded and packed, in plain torch and through the real trainer (DeepSpeed ZeRO-3, world size 1), the
attention backend the project selects, generation, tokens/s and MFU against the bf16 matmul peak measured here.

  python benchmarks/gpu_check.py prepare --dir .gpu_check [--dry-run]   # here: zoo entries + shards to carry
  python benchmarks/gpu_check.py check --dir .gpu_check --out OUT --work WORK [--dry-run]

``prepare`` builds what the GPU machine cannot: the zoo's tiny LLM and encoders (its tokenizer comes from an
asset package that machine lacks) and a few synthetic clips packed into shards (packing decodes mp4 with PyAV,
absent there). ``check`` trains two models: the tiny recipe (``configs/models/qwen2-tiny.yaml``) and the same
recipe with a random LLM of Qwen2.5-0.5B's architecture (``affectgpt/model/architectures``, 494 M parameters;
``--dry-run`` shrinks it to a toy of the same family). For each model:

- torch: one process, AdamW, no DeepSpeed. The padded and the packed loss of one fixed batch before any update
  (equal within bf16 tolerance), a few steps of each layout (tokens/s, FLOPs counted by torch, MFU against the
  matmul peak this script measured) and a short generation;
- zero3: ``launcher/train.py`` under ``torch.distributed.run`` (NCCL on a GPU, gloo on a CPU) with DeepSpeed
  ZeRO-3 in bf16 on the prepared shards, padded and packed; their first-step losses must agree too, and
  tokens/s and MFU are the trainer's own ``metrics.jsonl`` figures (its MFU is against the same-size matmul
  peak, measured in the trainer's process).

One table is printed and written to OUT/gpu_check.md, the raw figures to OUT/gpu_check.json and the trainer
logs to OUT/gpu_check.log. Exit 1 when any check fails; every row is still measured and reported.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("benchmarks.gpu_check")
ZOO_ENTRIES = ("llm/qwen2-tiny", "video/clip-tiny", "audio/whisper-tiny")
TINY_RECIPE = ROOT / "configs" / "models" / "qwen2-tiny.yaml"
LARGE_ARCHITECTURE = "Qwen/Qwen2.5-0.5B-Instruct"
# The dry run's stand-in for the 0.5B LLM: the same family and code path, toy dimensions, the zoo's vocabulary.
TOY_DIMS = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": 8192}
# bf16 keeps 8 mantissa bits: a mean token loss of ~12 agrees to ~1e-2 between two summation orders.
BF16_LOSS_RTOL = 2e-2


@dataclass(frozen=True)
class Sizes:
    clips: int  # synthetic clips made by prepare (the coarse split, ~70 %, is packed)
    frames: int
    frame_size: int
    clip_seconds: float
    peak_size: int  # the square bf16 matmul whose rate MFU is quoted against
    peak_seconds: float
    batch: int  # torch: samples per step
    steps: int  # torch: timed steps per layout, after one warm-up step
    train_batch: dict[str, int]  # zero3: the models trained and their samples per step (one micro-batch)
    train_steps: int  # zero3: optimizer steps per run (the first is not timed)
    workers: int  # zero3: loader workers
    # zero3: dist.precision. The dry run keeps the trainer's CPU default (fp32): bf16 matmuls on a CPU without
    # bf16 units are an emulation ~100x slower that says nothing about the GPU path (the torch rows stay bf16).
    precision: str


GPU = Sizes(clips=64, frames=8, frame_size=224, clip_seconds=3.0, peak_size=8192, peak_seconds=2.0, batch=16,
            steps=5, train_batch={"tiny": 8, "qwen2.5-0.5b-arch": 16}, train_steps=8, workers=4,
            precision="bf16")
DRY = Sizes(clips=12, frames=4, frame_size=32, clip_seconds=1.0, peak_size=256, peak_seconds=0.2, batch=2,
            steps=1, train_batch={"tiny": 2}, train_steps=3, workers=0,
            precision="auto")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="build the zoo entries and shards the check needs (where the project "
                                          "is installed)")
    prep.add_argument("--dir", type=Path, required=True, help="folder to fill (carried to the GPU machine)")
    prep.add_argument("--dry-run", action="store_true", help="toy frames for the CPU dry run")
    chk = sub.add_parser("check", help="run the check (on the GPU machine, or --dry-run on CPU)")
    chk.add_argument("--dir", type=Path, required=True, help="the folder prepare filled")
    chk.add_argument("--out", type=Path, required=True, help="where the table, the JSON and the log go")
    chk.add_argument("--work", type=Path, required=True, help="scratch: model dirs, checkpoints, run logs")
    chk.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: the same steps, for CI")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    sizes = DRY if args.dry_run else GPU
    if args.command == "prepare":
        return prepare(args.dir, sizes)
    return check(args.dir, args.out, args.work, sizes, args.dry_run)


def prepare(folder: Path, sizes: Sizes) -> int:
    """Zoo entries into ``folder/models``; the coarse split of a small synthetic corpus packed into
    ``folder/shards`` in this process (``affectgpt.packing.pack_split``, the pack job's driver, without Ray)."""
    import shutil

    from affectgpt.model.zoo import build_zoo
    from affectgpt.packing import pack_split
    from affectgpt.synth.corpus_writer import SynthConfig, write_corpus
    from shards.schema import PackConfig

    status = build_zoo(folder / "models", only=list(ZOO_ENTRIES), seed=0)
    failed = {k: v for k, v in status.items() if v.split(":")[0] not in ("built", "exists")}
    if failed:
        log.error("zoo entries failed: %s", failed)
        return 1
    shards = folder / "shards"
    if (shards / "index.json").is_file():
        log.info("%s exists: kept", shards)
        return 0
    corpus = folder / "corpus"
    write_corpus(SynthConfig(out=corpus, num=sizes.clips, seed=0, size=max(sizes.frame_size, 32),
                             seconds=sizes.clip_seconds))
    cfg = PackConfig(frames=sizes.frames, size=sizes.frame_size, max_audio_seconds=4.0, samples_per_shard=32)
    report = pack_split(corpus, "coarse", str(shards), cfg, progress=False)
    shutil.rmtree(corpus)  # the videos need not travel: the shards hold the decoded clips
    log.info("prepared %s: %d clips packed into %s", folder, report.index.samples, shards)
    return 0


def check(folder: Path, out: Path, work: Path, sizes: Sizes, dry_run: bool) -> int:
    from affectgpt.model.attention import resolve_attn_implementation
    from affectgpt.train.flops import matmul_peak_flops
    from shards.index import read_index

    if not dry_run and not torch.cuda.is_available():
        log.error("no CUDA device: run with --dry-run for the CPU check")
        return 1
    for entry in ZOO_ENTRIES:
        if not (folder / "models" / entry).is_dir():
            log.error("%s is missing: run benchmarks/gpu_check.sh --prepare where the project is installed",
                      folder / "models" / entry)
            return 2
    if not (folder / "shards" / "index.json").is_file():
        log.error("%s is missing: run benchmarks/gpu_check.sh --prepare", folder / "shards" / "index.json")
        return 2
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu" if dry_run else "cuda")
    peak = matmul_peak_flops(device, torch.bfloat16, size=sizes.peak_size, min_seconds=sizes.peak_seconds)
    backend = resolve_attn_implementation("auto")
    log.info("device %s, attention backend %s, bf16 matmul peak %.1f TFLOP/s", device, backend, peak / 1e12)
    pack = read_index(str(folder / "shards")).config
    zoo = folder / "models"
    large_name = "toy-llm" if dry_run else "qwen2.5-0.5b-arch"
    recipes = {
        "tiny": recipe_overrides(zoo / "llm" / "qwen2-tiny", "pretrained", zoo, pack),
        large_name: recipe_overrides(large_llm(work / "llm-large", zoo, dry_run), "random", zoo, pack),
    }
    rows: list[dict] = []
    for name, recipe in recipes.items():
        rows += guarded(name, "torch", partial(torch_rows, name, recipe, device, sizes, peak, pack))
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the model is gone: leave its memory to the next one
    logs = out / "gpu_check.log"
    logs.write_text("", encoding="utf-8")
    for name, batch in sizes.train_batch.items():
        recipe = recipes[name]
        params = next((r["params_m"] for r in rows if r["model"] == name and r.get("params_m")), None)
        rows += guarded(name, "zero3", partial(zero3_rows, name, recipe, folder / "shards", work, batch, sizes, logs,
                                               params, backend))
    env = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
           "transformers": _version("transformers"), "deepspeed": _version("deepspeed"), "attention": backend,
           "peak_tflops": peak / 1e12, "dry_run": dry_run, "wall_s": time.perf_counter() - start}
    table = to_markdown(rows, env)
    print(table)
    (out / "gpu_check.md").write_text(table + "\n", encoding="utf-8")
    (out / "gpu_check.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1), encoding="utf-8")
    failed = [f"{r['model']} {r['path']} {r['layout']}" for r in rows if not r["ok"]]
    if failed:
        log.error("checks failed: %s", "; ".join(failed))
    log.info("done in %.0f s", env["wall_s"])
    return 1 if failed else 0


def recipe_overrides(llm: Path, llm_init: str, zoo: Path, pack) -> dict:
    """Keys set over the tiny recipe: ``llm``, the zoo's encoders (absolute paths) and the shards' frame shape."""
    return {"llm": str(llm.resolve()), "llm_init": llm_init, "dtype": "bfloat16", "num_frames": pack.frames,
            "frame_size": pack.size, "max_audio_seconds": min(pack.max_audio_seconds, 4.0),
            "video": {"encoder": str((zoo / "video" / "clip-tiny").resolve())},
            "audio": {"encoder": str((zoo / "audio" / "whisper-tiny").resolve())}}


def large_llm(out: Path, zoo: Path, dry_run: bool) -> Path:
    """An LLM directory with Qwen2.5-0.5B's architecture (shrunk to TOY_DIMS in a dry run) and the zoo's
    tokenizer; the recipe's ``llm_init: random`` draws its weights."""
    from transformers import AutoConfig, AutoTokenizer

    from affectgpt.model import hub

    tokenizer = AutoTokenizer.from_pretrained(zoo / "llm" / "qwen2-tiny")
    data = json.loads((Path(hub.architecture(LARGE_ARCHITECTURE)) / "config.json").read_text(encoding="utf-8"))
    data.update(TOY_DIMS if dry_run else {}, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    # Built from the edited dict, so derived fields (per-layer attention types) follow the new depth.
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def guarded(model: str, path: str, fn) -> list[dict]:
    """``fn()``'s rows, or one failed row naming the error: one broken path must not hide the others."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - reported in the table, the traceback in the log
        log.error("%s %s failed:\n%s", model, path, traceback.format_exc())
        message = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
        return [{"model": model, "path": path, "layout": "-", "ok": False,
                 "check": f"ERROR {type(e).__name__}: {message[:120]}"}]


def torch_rows(name: str, recipe: dict, device: torch.device, sizes: Sizes, peak: float, pack) -> list[dict]:
    from affectgpt.model import AffectGPT
    from affectgpt.model.affectgpt import load_recipe
    from affectgpt.train.flops import count_flops

    torch.manual_seed(0)
    model = AffectGPT.from_config(load_recipe(TINY_RECIPE, ROOT, recipe)).to(device).train()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    attention = model.llm.config._attn_implementation
    dtype = next(model.llm.parameters()).dtype
    precision = "bf16" if dtype == torch.bfloat16 else str(dtype).removeprefix("torch.")
    samples = _samples(sizes.batch, pack)
    batches = {packed: {k: v.to(device) for k, v in model.collator(train=True, packed=packed)(samples).items()}
               for packed in (False, True)}
    with torch.no_grad():
        losses = {packed: float(model(**batch).loss) for packed, batch in batches.items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rows = []
    for packed, batch in batches.items():
        def step(batch: dict = batch) -> None:
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        _, flops = count_flops(step)  # also the warm-up step
        _sync(device)
        start = time.perf_counter()
        for _ in range(sizes.steps):
            step()
        _sync(device)
        seconds = (time.perf_counter() - start) / sizes.steps
        row = {"model": name, "params_m": params, "path": "torch", "layout": "packed" if packed else "padded",
               "precision": precision, "attention": attention, "loss": losses[packed],
               "tokens_per_s": _tokens(batch) / seconds,
               "mfu": flops / seconds / peak, "step_s": seconds, "row_tokens": batch["input_ids"].numel(), "ok": True}
        if packed:
            row.update(_agreement(losses[True], losses[False]))
        rows.append(row)
    model.eval()
    texts = model.generate(samples[:2], max_new_tokens=8)
    generated = len(texts) == 2 and all(isinstance(t, str) for t in texts)
    rows[0].update(ok=generated, check="generate ok" if generated else "generate FAILED", generated=texts)
    if device.type == "cuda":
        rows[0]["max_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    log.info("%s torch: %s", name, rows)
    return rows


def zero3_rows(name: str, recipe: dict, shards: Path, work: Path, batch: int, sizes: Sizes, logs: Path,
               params: float | None, backend: str) -> list[dict]:
    """``launcher/train.py`` on one rank, ZeRO-3, bf16, padded then packed; figures from its metrics.jsonl."""
    import importlib.util

    from affectgpt.config import flatten
    from affectgpt.run_metrics import TRAIN_LOSS, TRAIN_MFU, TRAIN_STEP_TIME_S, TRAIN_TOKENS_PER_S

    if importlib.util.find_spec("deepspeed") is None:
        return [{"model": name, "path": "zero3", "layout": "-", "ok": False,
                 "check": "NOT RUN: deepspeed is not importable (benchmarks/gpu_check.sh --prepare builds its wheel)"}]
    rows = []
    for packed in (False, True):
        layout = "packed" if packed else "padded"
        ckpt = work / f"ckpt-{name}-{layout}"
        overrides = [f"model.recipe={TINY_RECIPE}", *(f"model.set.{k}={v}" for k, v in flatten(recipe).items()),
                     f"data.shards={shards}", f"data.workers={sizes.workers}",
                     f"data.packed={str(packed).lower()}", "dist.strategy=zero3", f"dist.precision={sizes.precision}",
                     f"checkpoint.dir={ckpt}", "checkpoint.resume=never", f"checkpoint.every={sizes.train_steps}",
                     f"max_steps={sizes.train_steps}", "log_every=1", f"global_batch_size={batch}",
                     f"micro_batch_size={batch}", "optim.warmup_steps=0", "tracking.enabled=false"]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
               str(ROOT / "launcher" / "train.py"), "--config", str(ROOT / "configs" / "stage1.yaml"), *overrides]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        wall = time.perf_counter() - start
        with logs.open("a", encoding="utf-8") as f:
            f.write(f"==== {name} zero3 {layout}: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
        row = {"model": name, "params_m": params, "path": "zero3", "layout": layout, "attention": backend,
               "wall_s": wall, "ok": proc.returncode == 0}
        if proc.returncode != 0:
            row["check"] = f"exit {proc.returncode}: {_root_cause(proc.stdout + proc.stderr)}"
            rows.append(row)
            continue
        steps = [json.loads(line) for line in (ckpt / "metrics.jsonl").read_text().splitlines()]
        steps = [s for s in steps if TRAIN_LOSS in s]
        timed = steps[1:] or steps  # the first step also counts FLOPs and warms up
        ds_config = json.loads((ckpt / "deepspeed.json").read_text())
        row.update(precision="bf16" if ds_config.get("bf16", {}).get("enabled") else "fp32",
                   loss=steps[0][TRAIN_LOSS], last_loss=steps[-1][TRAIN_LOSS], steps=len(steps),
                   tokens_per_s=statistics.median(s[TRAIN_TOKENS_PER_S] for s in timed),
                   mfu=statistics.median(s[TRAIN_MFU] for s in timed),
                   step_s=statistics.median(s[TRAIN_STEP_TIME_S] for s in timed), check="exit 0")
        rows.append(row)
    if all("loss" in r for r in rows):
        rows[1].update(_agreement(rows[1]["loss"], rows[0]["loss"]))
    log.info("%s zero3: %s", name, rows)
    return rows


def _root_cause(output: str) -> str:
    """The rank's last exception line (not the launcher's ChildFailedError that wraps it), for the table."""
    found = [m.group(1) for m in re.finditer(r"^(?:\[rank\d+\]:\s*)?([\w.]+(?:Error|Exception)\b.*)$", output, re.M)
             if "ChildFailedError" not in m.group(1)]
    return found[-1].strip()[:120] if found else "see gpu_check.log"


def _agreement(packed: float, padded: float) -> dict:
    equal = abs(packed - padded) <= BF16_LOSS_RTOL * abs(padded)
    return {"packed_equals_padded": equal, "ok": equal,
            "check": f"packed == padded: {'yes' if equal else 'NO'} ({abs(packed - padded) / abs(padded):.1e})"}


def _samples(n: int, pack) -> list[dict]:
    """Fixed synthetic clips (docs/CONTRACTS.md shape) whose descriptions differ in length, as real ones do."""
    import numpy as np

    rng = np.random.default_rng(0)
    sentence = "The person raises their eyebrows and speaks quickly with a rising pitch, so the state is surprise."
    return [{"name": f"gpu_{i}", "frames": rng.integers(0, 255, (pack.frames, pack.size, pack.size, 3), np.uint8),
             "audio": (0.1 * rng.standard_normal(32000)).astype(np.float32), "has_audio": True,
             "subtitle": "I did not expect to see you here today.", "description": " ".join([sentence] * (1 + i % 4))}
            for i in range(n)]


def _tokens(batch: dict) -> int:
    return int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _fmt(row: dict, key: str, spec: str) -> str:
    return format(row[key], spec) if row.get(key) is not None else "-"


def to_markdown(rows: list[dict], env: dict) -> str:
    dry = " **DRY RUN on CPU at toy size: the figures mean nothing**" if env["dry_run"] else ""
    lines = [f"GPU check: {env['device']}, torch {env['torch']}, transformers {env['transformers']}, deepspeed "
             f"{env['deepspeed']}, attention {env['attention']}, bf16 matmul peak {env['peak_tflops']:.1f} TFLOP/s "
             f"(measured here), {env['wall_s']:.0f} s{dry}",
             "",
             "| model | params M | path | precision | layout | loss (step 1) | tokens/s | MFU | check |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {_fmt(r, 'params_m', '.1f')} | {r['path']} | {r.get('precision', '-')} | "
                     f"{r['layout']} | {_fmt(r, 'loss', '.4f')} | {_fmt(r, 'tokens_per_s', ',.0f')} | "
                     f"{_fmt(r, 'mfu', '.1%')} | {r.get('check', '')} |")
    lines += ["", "torch: one process, AdamW, one fixed batch, MFU against the peak above. zero3: launcher/train.py, "
              "DeepSpeed ZeRO-3, world size 1, on the prepared shards; median over the steps after the first, "
              "MFU against the trainer's own same-size matmul peak."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
