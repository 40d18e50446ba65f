"""The prompt for base models: without a chat template the plain format, and a recipe's own template wins; and
batched prompts are token for token those of rendering and tokenising each prompt alone."""

from __future__ import annotations

import csv
import functools
import re

import pytest
from transformers import AutoTokenizer

from affectgpt.corpus import read_split
from affectgpt.model.config import AffectGPTConfig
from affectgpt.model.prompt import (
    AUDIO_TOKEN,
    FUSION_TOKEN,
    IGNORE_INDEX,
    PLAIN_TEMPLATE,
    VIDEO_TOKEN,
    PromptBuilder,
    plain_backend,
)


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
    [(ids, labels)] = builder(tok).encode(["you did what?"], ["She is surprised."])
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
        text = tok.decode(builder(tok, chat_template=own).prompt_ids(["hi"])[0])
        assert text.startswith("<<Video:") and text.endswith(">>A:")
    assert "<|im_start|>assistant" in chat.decode(builder(chat).prompt_ids(["hi"])[0])


def test_plain_template_without_bos_token(base_tokenizer):
    text = base_tokenizer.apply_chat_template([{"role": "user", "content": "x"}], chat_template=PLAIN_TEMPLATE,
                                              bos_token=None, add_generation_prompt=True, tokenize=False)
    assert text == "x\nDescription:\n"


def emer_fine_texts(csv_path) -> list[tuple[str, str]]:
    """(subtitle, description) pairs from the real EMER-Fine release: the subtitles its descriptions quote, in
    English and Chinese, with the descriptions in both languages."""
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    pairs = []
    for row in rows:
        for text, pattern in ((row["english"], r"subtitle[^\"“]{0,40}[\"“](.*?)[\"”]"),
                              (row["chinese"], r"字幕内容：“(.*?)”")):
            pairs += [(quoted, text) for quoted in re.findall(pattern, text)[:1]]
    return pairs


def edge_texts() -> list[tuple[str, str]]:
    """Subtitles at the template's seams: leading/trailing whitespace and newlines, placeholders to strip,
    punctuation that BPE may merge with the text around it, long ones (cut to the limit, in the middle of a
    multi-byte character too)."""
    return [("", ""), (" ", " x"), ("  trailing  ", "\n"), ("\nlead\n", "She frowns.\n\n"), ("\\n", "\t"),
            ("x<|video|>y<|audio|>", "<|fusion|>"), ("Subtitle:", "Description:"), ("!!!", "..."),
            ("what?!\n\n", " spaced  out "), ("word " * 200, "long " * 400), ("哈" * 300, "哭" * 500),
            ("😀 émotion naïve", "Ça va? 😢")]


def reference_encode(b: PromptBuilder, subtitle: str, description: str) -> tuple[list[int], list[int]]:
    """One sample rendered and tokenised on its own, the way PromptBuilder must match: the whole chat template
    applied to the user turn, three tokenizer calls."""
    tok = b.tokenizer
    for token in (VIDEO_TOKEN, AUDIO_TOKEN, FUSION_TOKEN):
        subtitle = subtitle.replace(token, "")
    ids = tok(subtitle, add_special_tokens=False)["input_ids"]
    if len(ids) > b.max_subtitle_tokens:
        subtitle = tok.decode(ids[: b.max_subtitle_tokens])
    lines = [f"{label}: {token * n}" for label, token, n in (("Video", VIDEO_TOKEN, b.num_video),
             ("Audio", AUDIO_TOKEN, b.num_audio), ("Audio-visual", FUSION_TOKEN, b.num_fusion)) if n]
    user = "\n".join([*lines, f"Subtitle: {subtitle}", b.instruction])
    text = tok.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False,
                                   chat_template=b.chat_template or tok.chat_template or PLAIN_TEMPLATE)
    prompt = tok(text, add_special_tokens=False)["input_ids"]
    target = tok(description, add_special_tokens=False)["input_ids"][: b.max_description_tokens] + [tok.eos_token_id]
    return prompt + target, [IGNORE_INDEX] * len(prompt) + target


@pytest.fixture(scope="module")
def corpus_texts(emer_fine_csv, synth_corpus) -> list[tuple[str, str]]:
    synth = [(r.subtitle, r.description) for split in ("coarse", "fine", "test")
             for r in read_split(synth_corpus, split, require_video=False)]
    # The release's descriptions run to 2,900 characters; their first 600 still exceed the target limit below.
    return [(s, d[:600]) for s, d in emer_fine_texts(emer_fine_csv)] + synth + edge_texts()


@pytest.fixture(scope="module")
def tokenizers(zoo, request):
    paths = {"llama-tiny": lambda: zoo / "llm/llama-tiny", "smollm2": lambda: request.getfixturevalue("smollm2_dir"),
             "gemma3": lambda: request.getfixturevalue("gemma3_dir")}
    return functools.cache(lambda name: AutoTokenizer.from_pretrained(paths[name]()))


GEMMA_TURNS = ("{{ bos_token }}<start_of_turn>user\n{{ messages[0]['content'] | trim }}<end_of_turn>\n"
               "<start_of_turn>model\n")


@pytest.mark.parametrize(("name", "template"), [("llama-tiny", None), ("llama-tiny", PLAIN_TEMPLATE),
                                                ("smollm2", None), ("gemma3", None), ("gemma3", GEMMA_TURNS)],
                         ids=["llama-tiny-chatml", "llama-tiny-plain", "smollm2-chatml", "gemma3-plain",
                              "gemma3-turns"])
def test_batched_prompts_equal_rendering_each_alone(name, template, tokenizers, corpus_texts):
    tok = tokenizers(name)
    b = PromptBuilder(tokenizer=tok, instruction=AffectGPTConfig.instruction, num_video=8, num_audio=8,
                      num_fusion=4, max_subtitle_tokens=48, max_description_tokens=128, chat_template=template)
    assert b._around is not None and plain_backend(tok) is not None  # the fast paths are the ones tested
    subtitles, descriptions = zip(*corpus_texts, strict=True)
    for start in range(0, len(corpus_texts), 7):  # batches of 7: each mixes languages and lengths
        batch = slice(start, start + 7)
        expected = [reference_encode(b, s, d) for s, d in corpus_texts[batch]]
        assert b.encode(subtitles[batch], descriptions[batch]) == expected
        assert b.prompt_ids(subtitles[batch]) == [ids[: labels.count(IGNORE_INDEX)] for ids, labels in expected]


def test_template_that_reads_the_subtitle_is_rendered_per_prompt(base_tokenizer):
    """A template that does more than write the user's text (here: counts its characters) gets no cached
    render, and each prompt still comes out as rendering it alone."""
    own = "{{ messages[0]['content'] }} ({{ messages[0]['content'] | length }} characters)"
    b = builder(base_tokenizer, chat_template=own)
    assert b._around is None
    users = [f"Video: {VIDEO_TOKEN * 2}\nSubtitle: {s}\nName the emotions." for s in ("hi", "hello")]
    assert [base_tokenizer.decode(ids) for ids in b.prompt_ids(["hi", "hello"])] == [
        f"{user} ({len(user)} characters)" for user in users]


def test_backend_set_to_truncate_is_left_to_the_hf_call(zoo, corpus_texts):
    """A Rust tokenizer configured to truncate (or pad) is not called directly: the HF call, which clears that
    for a call without truncation, gives the ids."""
    tok = AutoTokenizer.from_pretrained(zoo / "llm/llama-tiny")
    tok.backend_tokenizer.enable_truncation(8)
    assert plain_backend(tok) is None
    b = builder(tok)
    subtitles, descriptions = zip(*corpus_texts[:5], strict=True)
    assert b.encode(subtitles, descriptions) == [reference_encode(b, s, d) for s, d in corpus_texts[:5]]
