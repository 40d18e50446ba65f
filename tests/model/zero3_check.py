"""Run by test_zero3.py in a fresh process (one rank, gloo): AffectGPT under DeepSpeed ZeRO-3.

  python tests/model/zero3_check.py ZOO OUT_DIR [LLM_DIR]     (LLM_DIR: default ZOO/llm/qwen2-tiny)

Checks that the model is partitioned at construction, that its ZeRO-3 loss equals the plain model's (padded
and packed), that it trains, generates and exports (consolidated state dict -> save_pretrained -> reload).
Prints ``ZERO3 OK`` at the end.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

ZOO, OUT = sys.argv[1], sys.argv[2]
LLM = sys.argv[3] if len(sys.argv) > 3 else f"{ZOO}/llm/qwen2-tiny"
LR = 3e-5 if len(sys.argv) > 3 else 1e-3  # a pretrained backbone diverges at the tiny model's rate
RECIPE = {"llm": LLM, "num_frames": 4, "pre_fusion_tokens": 2,
          "video": {"encoder": f"{ZOO}/video/clip-tiny", "num_queries": 4},
          "audio": {"encoder": f"{ZOO}/audio/whisper-tiny", "fusion": "attention", "num_queries": 3}}
DS = {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1, "zero_optimization": {"stage": 3},
      "zero_allow_untested_optimizer": True}


def samples() -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"name": f"s{i}", "frames": rng.integers(0, 256, (4, 24, 24, 3), dtype=np.uint8),
             "audio": rng.standard_normal(16000).astype(np.float32) * 0.1, "has_audio": True,
             "subtitle": "you did what?", "description": "Her brows rise and her voice jumps: surprise." * (i + 1)}
            for i in range(2)]


def main() -> None:
    import deepspeed
    import deepspeed.ops
    from transformers.integrations import HfDeepSpeedConfig
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from affectgpt.config import from_dict
    from affectgpt.model import AffectGPT, AffectGPTConfig

    cfg = from_dict(AffectGPTConfig, RECIPE)
    batch = samples()
    torch.manual_seed(0)
    plain = AffectGPT.from_config(cfg).train()
    reference = {packed: plain(**plain.collator(packed=packed)(batch)).loss.item() for packed in (False, True)}
    del plain  # one copy of a real backbone at a time

    # The shared-memory all-reduce DeepSpeed would compile on CPU (~100 s) serves inference only.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed("gloo")
    keep = HfDeepSpeedConfig(DS)  # noqa: F841  (transformers partitions at load while this lives)
    torch.manual_seed(0)
    model = AffectGPT.from_config(cfg)
    # transformers builds a grown embedding (new placeholder tokens) whole, for deepspeed.initialize to
    # partition; every other LLM weight is partitioned as it loads.
    embedding = model.llm.get_input_embeddings().weight
    whole = [n for n, p in model.llm.named_parameters() if p.numel() and p is not embedding]
    assert not whole, f"LLM not partitioned at construction: {whole[:3]}"
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=DS)
    assert all(p.numel() == 0 for p in model.parameters()), "parameters left unpartitioned by deepspeed.initialize"
    engine.train()
    for packed in (False, True):
        loss = engine(**model.collator(packed=packed)(batch)).loss
        assert abs(loss.item() - reference[packed]) < 1e-4, (packed, loss.item(), reference[packed])
    losses = []
    for _ in range(3):
        loss = engine(**model.collator()(batch)).loss
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    engine.eval()
    texts = model.generate(batch, max_new_tokens=4)
    assert len(texts) == 2

    state = engine._zero3_consolidated_16bit_state_dict()
    model.save_pretrained(OUT, state_dict=state)
    inputs = model.collator()(batch)
    with torch.no_grad():
        logits = engine(**inputs).logits
    unset_hf_deepspeed_config()
    loaded = AffectGPT.from_pretrained(OUT).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, logits, rtol=1e-5, atol=1e-5)
    print("ZERO3 OK", losses, texts, flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
