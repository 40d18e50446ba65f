"""The second real pretrained family: Gemma-3-270M base, converted from the GGUF of the gemma3-270m packages."""

from __future__ import annotations

import pytest
import torch

from affectgpt.config import from_dict
from affectgpt.model import AffectGPT, AffectGPTConfig
from affectgpt.model.prompt import IGNORE_INDEX

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(gemma3_dir, zoo) -> AffectGPT:
    cfg = from_dict(AffectGPTConfig, {
        "llm": str(gemma3_dir), "num_frames": 4,
        "video": {"encoder": str(zoo / "video/clip-tiny"), "num_queries": 4},
        "audio": {"encoder": str(zoo / "audio/whisper-tiny"), "num_queries": 3},
    })
    torch.manual_seed(0)
    return AffectGPT.from_config(cfg)


def test_converted_base_model_continues_text(model):
    tok, llm = model.tokenizer, model.llm
    assert type(llm).__name__ == "Gemma3ForCausalLM" and tok.chat_template is None
    assert getattr(llm.config, "quantization_config", None) is None
    ids = tok("The capital of France is Paris. The capital of Italy is", return_tensors="pt")
    out = llm.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Rome" in tok.decode(out[0, ids["input_ids"].shape[1]:])


def test_plain_prompt_and_masked_loss(model, samples):
    batch_samples = samples(2)
    batch = model.collator()(batch_samples)
    tok = model.tokenizer
    for row, sample in enumerate(batch_samples):
        labels, ids = batch["labels"][row], batch["input_ids"][row]
        trained = labels != IGNORE_INDEX
        assert tok.decode(labels[trained]) == sample["description"] + tok.eos_token
        first = int(trained.nonzero()[0])
        prompt = tok.decode(ids[:first])
        assert prompt.startswith(tok.bos_token) and prompt.endswith("Description:\n")
    out = model.train()(**batch)
    assert 0 < out.loss.item() < 30
    model.zero_grad(set_to_none=True)
    texts = model.eval().generate(batch_samples, max_new_tokens=4)
    assert len(texts) == 2


def test_round_trip_keeps_logits(model, samples, tmp_path):
    model.eval().save_pretrained(tmp_path / "m")
    loaded = AffectGPT.from_pretrained(tmp_path / "m").eval()
    assert loaded.tokenizer.chat_template is None
    inputs = model.collator()(samples(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
