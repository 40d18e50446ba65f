"""The AffectGPT model: frozen encoders -> fusion -> projector -> causal LLM. See ``affectgpt.model.affectgpt``."""

from affectgpt.model.affectgpt import AffectGPT
from affectgpt.model.attention import AttentionBackendError
from affectgpt.model.config import AffectGPTConfig, ModalityConfig

__all__ = ["AffectGPT", "AffectGPTConfig", "AttentionBackendError", "ModalityConfig"]
