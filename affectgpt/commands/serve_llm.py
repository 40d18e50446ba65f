"""Serve a local causal LM over a minimal OpenAI-compatible API (/v1/chat/completions, /v1/models, /health).

For the LLM label extractor where no vLLM or llama.cpp server is at hand; --model is a Hugging Face model
directory or a .gguf file (transformers dequantises it). Requests are answered one at a time.

Example:
  affectgpt serve-llm --model path/to/SmolLM2-135M-Instruct.Q4_1.gguf --port 8008 &
  affectgpt labels --llm-url http://127.0.0.1:8008/v1 --text "He looks anxious."
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "serve a local LLM over an OpenAI-compatible HTTP API (for the LLM label extractor)"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="HF model directory or .gguf file")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8008, help="port (default: 8008)")
    p.add_argument("--name", help="model name reported by the API (default: the model path's name)")


def run(args: argparse.Namespace) -> int:
    from affectgpt.eval.llm_server import ChatServer
    from affectgpt.model.chat_lm import ChatLM

    try:
        model = ChatLM(args.model)
    except (OSError, ValueError) as e:
        log.error("%s", e)
        return 2
    server = ChatServer((args.host, args.port), model, args.name or args.model.name)
    log.info("serving %s on http://%s:%d/v1", server.model_name, args.host, server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopped after %d requests", server.served)
    finally:
        server.server_close()
    return 0
