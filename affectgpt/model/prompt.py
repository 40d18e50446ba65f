"""The prompt: subtitle + one placeholder token per feature vector, in the backbone's own chat template.

The user turn reads::

    Video: <|video|><|video|>...      (one per video query; the model swaps in the video features)
    Audio: <|audio|>...
    Audio-visual: <|fusion|>...        (only with pre-fusion tokens)
    Subtitle: <subtitle text>
    <instruction>

and the assistant turn is the description followed by the tokenizer's end-of-sequence token. Only the
description and that end token are trained on (labels elsewhere are -100).

Base models ship no chat template (Gemma-3-270M base, for one). For them, unless the recipe sets its own
``chat_template``, the prompt is ``PLAIN_TEMPLATE``: the BOS token, the user turn as above, then a line
``Description:`` after which the description follows on a new line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

VIDEO_TOKEN = "<|video|>"
AUDIO_TOKEN = "<|audio|>"
FUSION_TOKEN = "<|fusion|>"
PLACEHOLDER_TOKENS = (VIDEO_TOKEN, AUDIO_TOKEN, FUSION_TOKEN)
IGNORE_INDEX = -100
# A Jinja chat template like any tokenizer's, so a recipe's own template and this fallback take one path.
PLAIN_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}{% for message in messages %}{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}Description:\n{% endif %}"
)


# Stand-ins for the subtitle when the template is rendered once per builder (``PromptBuilder.__post_init__``).
# Two that differ in length and characters, so a template that reads the text renders them differently.
_MARKS = ("@@subtitle@@", "##another, longer subtitle##")


@dataclass
class PromptBuilder:
    """Token ids of prompts and training targets, a batch at a time: one tokenizer call for a whole batch's
    texts, and the chat template rendered once per builder with a stand-in for the subtitle (the only part of
    the prompt that differs between samples). The ids are those of rendering and tokenising each prompt on its
    own (``tests/model/test_prompt.py`` checks this on real subtitles): every text is still tokenised whole,
    as BPE merges may cross any boundary between template text and the subtitle."""

    tokenizer: PreTrainedTokenizerBase
    instruction: str
    num_video: int  # placeholders per modality; 0 = modality absent from the model
    num_audio: int
    num_fusion: int
    max_subtitle_tokens: int
    max_description_tokens: int
    chat_template: str | None = None  # None: the tokenizer's own, or PLAIN_TEMPLATE if it has none

    def __post_init__(self) -> None:
        self._around = self._template_around()

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.eos_id if pad is None else pad

    def prompt_ids(self, subtitles: Sequence[str]) -> list[list[int]]:
        """The prompt of each subtitle, up to the point where the description follows."""
        return self._encode(subtitles, [])[0]

    def encode(self, subtitles: Sequence[str], descriptions: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """Training examples: ``(input_ids, labels)`` per (subtitle, description), the prompt masked."""
        if len(subtitles) != len(descriptions):
            raise ValueError(f"{len(subtitles)} subtitles for {len(descriptions)} descriptions")
        prompts, targets = self._encode(subtitles, descriptions)
        return [(p + t, [IGNORE_INDEX] * len(p) + t) for p, t in zip(prompts, targets, strict=True)]

    def _encode(self, subtitles: Sequence[str], descriptions: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        """(prompt ids, target ids). One tokenizer call takes the subtitles (their length decides the
        truncation), the descriptions and the prompts as they read when no subtitle is cut; the prompts whose
        subtitle is cut are rendered and tokenised again."""
        subtitles = [_without_placeholders(s) for s in subtitles]
        n, m = len(subtitles), len(descriptions)
        ids = self._ids([*subtitles, *descriptions, *(self._prompt_text(s) for s in subtitles)])
        prompts = ids[n + m :]
        cut = [i for i in range(n) if len(ids[i]) > self.max_subtitle_tokens]
        if cut:
            texts = [self._prompt_text(self.tokenizer.decode(ids[i][: self.max_subtitle_tokens])) for i in cut]
            for i, redone in zip(cut, self._ids(texts), strict=True):
                prompts[i] = redone
        targets = [t[: self.max_description_tokens] + [self.eos_id] for t in ids[n : n + m]]
        return prompts, targets

    def _ids(self, texts: list[str]) -> list[list[int]]:
        # The template already wrote any BOS token into a prompt's text.
        if not texts:
            return []
        backend = plain_backend(self.tokenizer)
        if backend is None:
            return self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [encoding.ids for encoding in backend.encode_batch_fast(texts, add_special_tokens=False)]

    def _user_text(self, subtitle: str) -> str:
        lines = []
        for label, token, count in (("Video", VIDEO_TOKEN, self.num_video), ("Audio", AUDIO_TOKEN, self.num_audio),
                                    ("Audio-visual", FUSION_TOKEN, self.num_fusion)):
            if count:
                lines.append(f"{label}: {token * count}")
        lines.append(f"Subtitle: {subtitle}")
        lines.append(self.instruction)
        return "\n".join(lines)

    def _render(self, subtitle: str) -> str:
        messages = [{"role": "user", "content": self._user_text(subtitle)}]
        template = self.chat_template or self.tokenizer.chat_template or PLAIN_TEMPLATE
        return self.tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True,
                                                  tokenize=False)

    def _prompt_text(self, subtitle: str) -> str:
        if self._around is None:
            return self._render(subtitle)
        before, after = self._around
        return before + subtitle + after

    def _template_around(self) -> tuple[str, str] | None:
        """The rendered prompt before and after the subtitle, when the template writes the user's text as it
        is (two different stand-ins render to the same text around them); None for a template that does
        anything else with it, whose prompts are then rendered one by one."""
        around = set()
        for mark in _MARKS:
            text = self._render(mark)
            if text.count(mark) != 1:
                return None
            around.add(tuple(text.split(mark)))
        return around.pop() if len(around) == 1 else None


def plain_backend(tokenizer: PreTrainedTokenizerBase) -> Tokenizer | None:
    """The Rust tokenizer itself, where the HF tokenizer's call would only hand it the texts: a fast tokenizer
    whose class keeps the stock call, with no truncation or padding set on the backend and special tokens split
    as the HF side says. Its ``encode_batch_fast`` gives the same ids without the offsets that HF's call has
    it compute and without HF's per-call work: a third less CPU for a batch's few short texts."""
    cls = type(tokenizer)
    if (not isinstance(tokenizer, PreTrainedTokenizerFast) or cls.__call__ is not PreTrainedTokenizerBase.__call__
            or cls._encode_plus is not PreTrainedTokenizerFast._encode_plus
            or hasattr(tokenizer, "_switch_to_input_mode")):
        return None
    backend = tokenizer.backend_tokenizer
    if backend.truncation or backend.padding or backend.encode_special_tokens != bool(tokenizer.split_special_tokens):
        return None
    return backend


def _without_placeholders(subtitle: str) -> str:
    for token in PLACEHOLDER_TOKENS:  # a subtitle must not smuggle in feature slots
        subtitle = subtitle.replace(token, "")
    return subtitle
