"""Emotion labels by an LLM, the EMER papers' protocol, behind the same interface as the lexicon extractor.

The model is a local chat LM (``affectgpt.model.chat_lm.ChatLM``: a directory or a ``.gguf`` file) or any
OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, llama.cpp server, ``affectgpt serve-llm``). Replies
are parsed leniently (JSON list, or a comma/line separated list); a reply with no usable list is malformed and
re-asked, at a non-zero temperature because greedy decoding would repeat it. Transport errors (timeouts,
refused connections, HTTP 5xx/429) are retried with exponential back-off and raise LLMError when retries run
out; a description whose replies all stay malformed gets no labels and is counted in ``failures``. Good
replies are cached on disk, keyed by a hash of model, prompt and text, so a re-run costs nothing; failures are
not cached, so a re-run asks again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from affectgpt.atomic import write_atomic
from affectgpt.eval.extract import Extraction, Extractor, LexiconExtractor, _extraction
from affectgpt.eval.languages import detect
from affectgpt.eval.lexicon import default_lexicon

log = logging.getLogger(__name__)

PROMPT_VERSION = 3  # part of the cache key: bump when the prompt changes
SYSTEM = (
    "You read a description of a person in a video clip, in English or in Chinese, and list the emotions it "
    "attributes to the person. Leave out emotions that appear only in quoted subtitles and emotions the "
    "description denies. Reply with a JSON list of lower-case English emotion words and nothing else, or [] if "
    "there are none."
)
USER = "Description: {text}"
# One worked example in the description's language: small models follow the reply format far more reliably
# after seeing it once, and an example in the same language shows that the answer is English words anyway.
EXAMPLES = {
    "en": [
        {"role": "user", "content": USER.format(text=(
            'She frowns and her voice trembles. The subtitle says: "I am so happy for you." She is not angry; '
            "she seems disappointed and anxious."
        ))},
        {"role": "assistant", "content": '["disappointed", "anxious"]'},
    ],
    "zh": [
        {"role": "user", "content": USER.format(text=(
            "她皱着眉头，声音颤抖。字幕内容：\u201c我真为你高兴。\u201d她并不生气，似乎有些失望和焦虑。"
        ))},
        {"role": "assistant", "content": '["disappointed", "anxious"]'},
    ],
}
# a label is 1-3 lower-case English words or, when a model answers in Chinese anyway, one Chinese word; both
# are normalised onto the lexicon's wheel
_WORD = re.compile(r"^(?:[a-z]+(?:[ -][a-z]+){0,2}|[\u4e00-\u9fff]{1,6})$")
_EMPTY_REPLIES = {"[]", "none", "no emotions", "none.", "n/a"}


class LLMError(RuntimeError):
    """The LLM could not be reached or refused the request; the message names the endpoint."""


class TransportError(LLMError):
    """A failure worth retrying: timeout, refused connection, HTTP 429/5xx, a response without a reply."""


class ChatBackend(Protocol):
    name: str  # identifies the model in the cache key

    def chat(self, messages: list[dict[str, str]], temperature: float, max_tokens: int) -> str: ...


@dataclass
class LLMExtractorConfig:
    """The LLM label extractor.

    url: OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 (none: load ``model`` locally)
    model: served model name (with url) or a local HF model dir / .gguf file
    cache_dir: reply cache directory
    timeout_s: seconds per request
    retries: retries per description
    backoff_s: first retry delay in seconds, doubled per retry
    max_tokens: reply length limit
    max_labels: a longer list is rambling, treated as malformed
    """

    url: str | None = None
    model: str | None = None
    cache_dir: Path | None = Path(".cache/llm-labels")
    timeout_s: float = 60.0
    retries: int = 2
    backoff_s: float = 1.0
    max_tokens: int = 48
    max_labels: int = 12

    def __post_init__(self):
        if not self.url and not self.model:
            raise ValueError("the LLM extractor needs a url (OpenAI-compatible endpoint) or a local model path")
        if self.timeout_s <= 0 or self.retries < 0 or self.backoff_s < 0 or self.max_tokens < 1:
            raise ValueError("timeout_s must be > 0, max_tokens >= 1, retries and backoff_s >= 0")


@dataclass
class ExtractorConfig:
    """Which extractor turns descriptions into labels: the lexicon, or an LLM when ``llm`` is set.

    lang: language of the descriptions for the lexicon's scope rules; auto detects it per description
    """

    lang: Literal["auto", "en", "zh"] = "auto"
    llm: LLMExtractorConfig | None = field(default=None, metadata={"flag_prefix": "llm-"})


def build_extractor(cfg: ExtractorConfig) -> Extractor:
    if cfg.llm is None:
        return LexiconExtractor(lang=cfg.lang)
    return LLMExtractor(cfg.llm)


@dataclass
class LLMExtractor:
    cfg: LLMExtractorConfig
    backend: ChatBackend | None = None  # built from cfg when not given
    failures: list[str] = field(default_factory=list)  # texts whose replies stayed malformed

    def __post_init__(self):
        if self.backend is None:
            if self.cfg.url:
                self.backend = OpenAIChatBackend(self.cfg.url, self.cfg.model, self.cfg.timeout_s)
            else:
                from affectgpt.model.chat_lm import ChatLM

                try:
                    self.backend = ChatLM(self.cfg.model)
                except (OSError, ValueError) as e:
                    raise LLMError(f"local LLM {self.cfg.model}: {e}") from e

    def extract(self, text: str) -> Extraction:
        cached = self._cache_read(text)
        if cached is not None:
            return _to_extraction(cached)
        messages = prompt(text)
        last_error: LLMError | None = None
        for attempt in range(self.cfg.retries + 1):
            if attempt and last_error is not None:
                time.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))
            try:
                reply = self.backend.chat(messages, 0.0 if attempt == 0 else 0.7, self.cfg.max_tokens)
            except TransportError as e:
                log.warning("attempt %d/%d: %s", attempt + 1, self.cfg.retries + 1, e)
                last_error = e
                continue
            last_error = None
            words = parse_reply(reply, self.cfg.max_labels)
            if words is not None:
                self._cache_write(text, reply, words)
                return _to_extraction(words)
            log.warning("attempt %d/%d: malformed reply %r", attempt + 1, self.cfg.retries + 1, reply[:200])
        if last_error is not None:
            raise LLMError(f"{last_error} (after {self.cfg.retries + 1} attempts)") from last_error
        self.failures.append(text)
        return Extraction([], [])

    def extract_many(self, texts: list[str]) -> list[Extraction]:
        out = [self.extract(t) for t in texts]
        if self.failures:
            log.warning("%d of %d descriptions got only malformed replies (no labels)", len(self.failures), len(texts))
        return out

    def cache_key(self, text: str) -> str:
        blob = json.dumps([self.backend.name, PROMPT_VERSION, prompt(text)], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _cache_path(self, text: str) -> Path | None:
        if self.cfg.cache_dir is None:
            return None
        key = self.cache_key(text)
        return Path(self.cfg.cache_dir) / key[:2] / f"{key}.json"

    def _cache_read(self, text: str) -> list[str] | None:
        path = self._cache_path(text)
        if path is None or not path.is_file():
            return None
        try:
            return list(json.loads(path.read_text(encoding="utf-8"))["labels"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable cache entry %s", path)
            return None

    def _cache_write(self, text: str, reply: str, words: list[str]) -> None:
        path = self._cache_path(text)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"model": self.backend.name, "prompt_version": PROMPT_VERSION, "text": text,
                  "reply": reply, "labels": words}
        write_atomic(path, json.dumps(record, ensure_ascii=False), durable=False)  # a lost entry is asked again


def prompt(text: str) -> list[dict[str, str]]:
    """The chat messages that ask for the labels of ``text``: instructions, the worked example in the text's
    language, the text."""
    question = {"role": "user", "content": USER.format(text=text)}
    return [{"role": "system", "content": SYSTEM}, *EXAMPLES[detect(text)], question]


def parse_reply(reply: str, max_labels: int = 12) -> list[str] | None:
    """Emotion words from an LLM reply, or None when the reply holds no usable list.

    Accepts a JSON list (also inside a code fence, or cut off before its closing bracket) or a plain list
    separated by commas, semicolons, "and" or new lines (Chinese commas and semicolons too), with bullets,
    numbers, quotes or a leading "Emotions:" stripped. Items that are not 1-3 lower-case words or one Chinese
    word are dropped, and from a reply that is not a list only words the lexicon knows are kept.
    """
    text = reply.strip().strip("`").strip()
    if text.lower() in _EMPTY_REPLIES:
        return []
    items: list | None = None
    prose = False
    start = text.find("[")
    if start >= 0:
        end = text.find("]", start)
        chunk = text[start : end + 1] if end >= 0 else text[start:].rstrip(", ") + "]"
        try:
            items = json.loads(chunk)
        except ValueError:
            items = re.split(r"[,\uff0c\u3001]", chunk.strip("[]"))
        if items == []:
            return []
    if items is None:
        body = re.sub(r"^[^:\uff1a\n]{0,40}[:\uff1a]", "", text)  # a leading "Emotions:", "情绪："
        items = re.split(r"[,;\n\uff0c\u3001\uff1b]|\band\b", body)
        prose = True
    words = []
    for item in items:
        if not isinstance(item, str):
            continue
        word = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s*", "", item).strip()
        word = word.strip("\"'.\u201c\u201d\u3002").strip().lower()
        # from prose, only words the lexicon knows: anything else is likely the reply's own sentence
        if _WORD.match(word) and word not in words and (not prose or _known(word)):
            words.append(word)
    if not words or len(words) > max_labels:
        return None
    return words


def _known(word: str) -> bool:
    lexicon = default_lexicon()
    return lexicon.is_known(lexicon.normalise(word).label)


def _to_extraction(words: list[str]) -> Extraction:
    lexicon = default_lexicon()
    return _extraction([lexicon.normalise(w) for w in words])


class OpenAIChatBackend:
    """POST ``{url}/chat/completions`` with the standard library (no client package needed)."""

    def __init__(self, url: str, model: str | None, timeout_s: float):
        self.url = url.rstrip("/")
        self.model = model or "default"
        self.timeout_s = timeout_s
        self.name = f"openai:{self.model}"

    def chat(self, messages: list[dict[str, str]], temperature: float, max_tokens: int) -> str:
        endpoint = f"{self.url}/chat/completions"
        body = {"model": self.model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
        request = urllib.request.Request(
            endpoint, data=json.dumps(body).encode("utf-8"), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                data = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:300]
            if e.code in (408, 429) or e.code >= 500:
                raise TransportError(f"{endpoint}: HTTP {e.code}: {detail}") from e
            raise LLMError(f"{endpoint}: HTTP {e.code}: {detail}") from e
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise TransportError(f"{endpoint}: {getattr(e, 'reason', e)}") from e
        except ValueError as e:
            raise TransportError(f"{endpoint}: response is not JSON ({e})") from e
        try:
            return str(data["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError) as e:
            raise TransportError(f"{endpoint}: response has no choices[0].message.content: {str(data)[:200]}") from e
