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

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

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


@dataclass
class PromptBuilder:
    tokenizer: PreTrainedTokenizerBase
    instruction: str
    num_video: int  # placeholders per modality; 0 = modality absent from the model
    num_audio: int
    num_fusion: int
    max_subtitle_tokens: int
    max_description_tokens: int
    chat_template: str | None = None  # None: the tokenizer's own, or PLAIN_TEMPLATE if it has none

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.eos_id if pad is None else pad

    def user_text(self, subtitle: str) -> str:
        lines = []
        for label, token, count in (("Video", VIDEO_TOKEN, self.num_video), ("Audio", AUDIO_TOKEN, self.num_audio),
                                    ("Audio-visual", FUSION_TOKEN, self.num_fusion)):
            if count:
                lines.append(f"{label}: {token * count}")
        for token in PLACEHOLDER_TOKENS:  # a subtitle must not smuggle in feature slots
            subtitle = subtitle.replace(token, "")
        lines.append(f"Subtitle: {self._truncate(subtitle, self.max_subtitle_tokens)}")
        lines.append(self.instruction)
        return "\n".join(lines)

    def prompt_ids(self, subtitle: str) -> list[int]:
        messages = [{"role": "user", "content": self.user_text(subtitle)}]
        template = self.chat_template or self.tokenizer.chat_template or PLAIN_TEMPLATE
        text = self.tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True,
                                                  tokenize=False)
        # The template already wrote any BOS token into the text.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def target_ids(self, description: str) -> list[int]:
        ids = self.tokenizer(description, add_special_tokens=False)["input_ids"]
        return ids[: self.max_description_tokens] + [self.eos_id]

    def encode(self, subtitle: str, description: str) -> tuple[list[int], list[int]]:
        """Training example: ``(input_ids, labels)`` with the prompt masked."""
        prompt, target = self.prompt_ids(subtitle), self.target_ids(description)
        return prompt + target, [IGNORE_INDEX] * len(prompt) + target

    def _truncate(self, text: str, max_tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= max_tokens else self.tokenizer.decode(ids[:max_tokens])
