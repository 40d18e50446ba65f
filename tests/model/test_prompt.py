"""The prompt for base models: without a chat template the plain format, and a recipe's own template wins."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from affectgpt.model.prompt import IGNORE_INDEX, PLAIN_TEMPLATE, VIDEO_TOKEN, PromptBuilder


@pytest.fixture
def base_tokenizer(zoo):
    tok = AutoTokenizer.from_pretrained(zoo / "llm/llama-tiny")
    tok.chat_template = None  # what a base model's tokenizer looks like
    return tok


def builder(tok, **keys) -> PromptBuilder:
    return PromptBuilder(tokenizer=tok, instruction="Name the emotions.", num_video=2, num_audio=0, num_fusion=0,
                         max_subtitle_tokens=32, max_description_tokens=32, **keys)


def test_base_model_gets_the_plain_format(base_tokenizer):
    tok = base_tokenizer
    ids, labels = builder(tok).encode("you did what?", "She is surprised.")
    trained = [i for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    prompt = tok.decode([i for i, label in zip(ids, labels, strict=True) if label == IGNORE_INDEX])
    assert prompt == (f"{tok.bos_token}Video: {VIDEO_TOKEN * 2}\nSubtitle: you did what?\nName the emotions.\n"
                      "Description:\n")
    # The loss still covers exactly the description and the end token.
    assert tok.decode(trained) == "She is surprised." + tok.eos_token
    assert labels[len(ids) - len(trained):] == trained


def test_recipe_template_overrides_the_tokenizer(zoo, base_tokenizer):
    own = ("{% for message in messages %}<<{{ message['content'] }}>>{% endfor %}"
           "{% if add_generation_prompt %}A:{% endif %}")
    chat = AutoTokenizer.from_pretrained(zoo / "llm/llama-tiny")  # has ChatML
    for tok in (base_tokenizer, chat):
        text = tok.decode(builder(tok, chat_template=own).prompt_ids("hi"))
        assert text.startswith("<<Video:") and text.endswith(">>A:")
    assert "<|im_start|>assistant" in chat.decode(builder(chat).prompt_ids("hi"))


def test_plain_template_without_bos_token(base_tokenizer):
    text = base_tokenizer.apply_chat_template([{"role": "user", "content": "x"}], chat_template=PLAIN_TEMPLATE,
                                              bos_token=None, add_generation_prompt=True, tokenize=False)
    assert text == "x\nDescription:\n"
