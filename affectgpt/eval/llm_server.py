"""A minimal OpenAI-compatible chat server over a local Hugging Face causal LM (``affectgpt serve-llm``).

It speaks the subset of the API the LLM extractor and common clients use: ``POST /v1/chat/completions``
(messages, temperature, max_tokens; no streaming), ``GET /v1/models`` and ``GET /health``. Requests are
served one at a time: one CPU/GPU model answers faster sequentially than interleaved, and it keeps the
model free of thread-safety questions. For throughput use vLLM or llama.cpp's server: the extractor does
not care which.
"""

from __future__ import annotations

import json
import logging
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from affectgpt.model.chat_lm import ChatLM

log = logging.getLogger(__name__)
MAX_TOKENS_LIMIT = 1024


class ChatServer(HTTPServer):
    def __init__(self, address: tuple[str, int], model: ChatLM, model_name: str):
        super().__init__(address, ChatHandler)
        self.model = model
        self.model_name = model_name
        self.served = 0


class ChatHandler(BaseHTTPRequestHandler):
    server: ChatServer

    def do_GET(self):  # noqa: N802 (the name http.server dispatches to)
        if self.path == "/health":
            self._send(200, {"status": "ok", "model": self.server.model_name})
        elif self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": self.server.model_name, "object": "model"}]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self):  # noqa: N802
        if self.path != "/v1/chat/completions":
            self._error(404, f"no route {self.path}")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length).decode("utf-8"))
            messages, temperature, max_tokens = _validate(request)
        except (ValueError, TypeError) as e:
            self._error(400, str(e))
            return
        reply = self.server.model.chat(messages, temperature, max_tokens)
        self.server.served += 1
        self._send(200, {
            "id": f"chatcmpl-{self.server.served}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.server.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        })

    def log_message(self, fmt: str, *args) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"message": message, "type": "invalid_request_error"}})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _validate(request: object) -> tuple[list[dict[str, str]], float, int]:
    if not isinstance(request, dict):
        raise ValueError("the request body must be a JSON object")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
    ):
        raise ValueError("'messages' must be a non-empty list of {role, content} objects with string values")
    if request.get("stream"):
        raise ValueError("streaming is not supported")
    temperature = float(request.get("temperature", 0.0))
    max_tokens = int(request.get("max_tokens") if request.get("max_tokens") is not None else 256)
    if not 0 <= temperature <= 2 or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise ValueError(f"temperature must be in [0, 2] and max_tokens in [1, {MAX_TOKENS_LIMIT}]")
    return [{"role": m["role"], "content": m["content"]} for m in messages], temperature, max_tokens
