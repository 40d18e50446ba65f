"""The paper recipes (configs/models/, hub ids) built on the meta device from the shipped architecture configs:
offline, no weights, and every component's parameter count matches the published figure."""

from __future__ import annotations

from pathlib import Path

import pytest

from affectgpt.config import load_config
from affectgpt.model import AffectGPT, AffectGPTConfig
from affectgpt.train.plan import _components

RECIPES = Path(__file__).resolve().parents[2] / "configs" / "models"
# Published sizes, in the precision they are published with (model cards; CLIP and HuBERT papers).
CLIP_L, HUBERT_L = ("video encoder", 304e6, 1e6), ("audio encoder", 316e6, 1e6)
PUBLISHED = {
    "affectgpt-qwen2.5-7b.yaml": [("llm", 7.61e9, 0.01e9), CLIP_L, HUBERT_L],
    "qwen2.5-1.5b.yaml": [("llm", 1.54e9, 0.01e9), CLIP_L, HUBERT_L],
    "llama3.1-8b.yaml": [("llm", 8.03e9, 0.01e9), CLIP_L, HUBERT_L],
    "mistral-7b.yaml": [("llm", 7.25e9, 0.01e9), CLIP_L, HUBERT_L],
    "gemma2-2b.yaml": [("llm", 2.61e9, 0.01e9), CLIP_L, HUBERT_L],
}


@pytest.mark.parametrize("recipe", sorted(PUBLISHED))
def test_recipe_builds_on_meta_with_the_published_parameter_counts(recipe):
    cfg = load_config(AffectGPTConfig, RECIPES / recipe)
    model = AffectGPT.on_meta(cfg)
    # No weights are allocated; HuBERT's 1024-value mask embedding is made with the legacy torch.Tensor
    # constructor, which ignores the meta device.
    assert sum(p.numel() for p in model.parameters() if not p.is_meta) <= 1024
    counts = _components(model)
    for name, published, unit in PUBLISHED[recipe]:
        # Published figures are rounded or truncated to ``unit`` (Qwen's card says 7.61B for 7,615,616,512).
        assert abs(counts[name]["params"] - published) <= unit, (name, counts[name], published)
    assert counts["video encoder"]["trainable"] == counts["audio encoder"]["trainable"] == 0
    assert counts["llm"]["trainable"] == counts["llm"]["params"]


def test_meta_build_counts_what_the_real_build_holds(make_config):
    """A local model with its tokenizer: the meta build adds the placeholder tokens as the real one does."""
    for family in ("llama", "gemma"):
        cfg = make_config(family, audio_encoder="hubert-tiny", pre_fusion_tokens=2)
        real = AffectGPT.from_config(cfg)
        meta = AffectGPT.on_meta(cfg)
        shapes = {n: p.shape for n, p in real.named_parameters()}
        assert {n: p.shape for n, p in meta.named_parameters()} == shapes
        assert meta.token_ids == real.token_ids
        assert {n for n, p in meta.named_parameters() if p.requires_grad} == {
            n for n, p in real.named_parameters() if p.requires_grad}


def test_hub_id_recipe_needs_no_local_directory(tmp_path):
    """A hub id is kept as written (on a connected machine it downloads); a missing local path is still an error."""
    from affectgpt.config import ConfigError
    from affectgpt.model import hub

    cfg = load_config(AffectGPTConfig, RECIPES / "affectgpt-qwen2.5-7b.yaml")
    assert str(cfg.llm) == "Qwen/Qwen2.5-7B-Instruct"
    assert hub.architecture(cfg.llm).endswith("architectures/Qwen/Qwen2.5-7B-Instruct")
    assert hub.resolve(tmp_path, "Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    with pytest.raises(ConfigError, match="models/llm/nope-tiny does not exist"):
        load_config(AffectGPTConfig, overrides=["llm=models/llm/nope-tiny"])
