"""A plain chat LLM: any Hugging Face causal LM with a chat template, from a directory or a ``.gguf`` file
(transformers dequantises it). Pre-labelling merges and translates with it (``generate``, batched); the LLM
label extractor and ``affectgpt serve-llm`` ask it one conversation at a time (``chat``, the
``ChatBackend`` interface of ``affectgpt.eval.llm_extract``)."""

from __future__ import annotations

from pathlib import Path


class ChatLM:
    def __init__(self, path: str | Path, num_threads: int | None = None):
        """``num_threads``: torch's intra-op threads for this process (a Ray actor owning that many CPUs);
        None keeps torch's default."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such model directory or .gguf file")
        folder, gguf = (path.parent, {"gguf_file": path.name}) if path.suffix == ".gguf" else (path, {})
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.name = f"local:{path.name}"
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left", **gguf)
        if not self.tokenizer.chat_template:
            raise ValueError(f"{path}: the tokenizer has no chat template")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # bf16 on GPUs; CPUs without bf16 instructions multiply it ~400x slower than fp32.
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **gguf).to(self.device).eval()
        self._torch = torch

    def generate(self, conversations: list[list[dict[str, str]]], max_new_tokens: int,
                 temperature: float = 0.0) -> list[str]:
        """One reply per conversation: greedy at temperature 0, else sampled."""
        texts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
                 for c in conversations]
        # The chat template already wrote any BOS token into the text.
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampling = ({"do_sample": True, "temperature": temperature} if temperature > 0 else
                    {"do_sample": False, "temperature": None, "top_p": None, "top_k": None})
        with self._torch.inference_mode():
            out = self.model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                      **sampling)
        new = out[:, batch["input_ids"].shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def chat(self, messages: list[dict[str, str]], temperature: float, max_tokens: int) -> str:
        return self.generate([messages], max_tokens, temperature)[0]
