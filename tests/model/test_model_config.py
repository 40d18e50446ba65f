"""Model recipes: validation errors name the key and the path; every shipped recipe loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from affectgpt.config import ConfigError, from_dict, load_config
from affectgpt.model import AffectGPT, AffectGPTConfig, AttentionBackendError
from affectgpt.model.attention import resolve_attn_implementation

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_project(zoo, tmp_path, monkeypatch):
    """A working directory whose models/ is the tiny zoo, as after `affectgpt zoo build --out models/`."""
    (tmp_path / "models").symlink_to(zoo)
    monkeypatch.chdir(tmp_path)


def test_unknown_key_is_rejected(zoo):
    with pytest.raises(ConfigError, match="unknown key.*video.fusoin"):
        from_dict(AffectGPTConfig, {"llm": str(zoo / "llm/llama-tiny"),
                                    "video": {"encoder": str(zoo / "video/clip-tiny"), "fusoin": "mean"}})


# Paths with one slash (``org/name``) that are not directories are hub ids (affectgpt.model.hub).
@pytest.mark.parametrize(("key", "value"), [("llm", "nowhere/llm/x"), ("video", {"encoder": "nowhere/clip/x"}),
                                            ("audio", {"encoder": "nowhere/hubert/x"})])
def test_missing_directory_names_key_and_path(zoo, key, value):
    data = {"llm": str(zoo / "llm/llama-tiny"), key: value}
    with pytest.raises(ConfigError) as err:
        from_dict(AffectGPTConfig, data)
    assert key in str(err.value) and "nowhere/" in str(err.value) and "does not exist" in str(err.value)


def test_recipe_file_error_names_the_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("llm: models/llm/absent\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: .*llm: directory models/llm/absent does not exist"):
        load_config(AffectGPTConfig, recipe)


def test_bad_values(zoo):
    base = {"llm": str(zoo / "llm/llama-tiny")}
    with pytest.raises(ConfigError, match="both modalities"):
        from_dict(AffectGPTConfig, {**base, "video": {"encoder": str(zoo / "video/clip-tiny")},
                                    "pre_fusion_tokens": 2})
    with pytest.raises(ConfigError, match="num_queries"):
        from_dict(AffectGPTConfig, {**base, "video": {"encoder": str(zoo / "video/clip-tiny"), "num_queries": 0}})
    with pytest.raises(ConfigError, match="fusion"):
        from_dict(AffectGPTConfig, {**base, "video": {"encoder": str(zoo / "video/clip-tiny"), "fusion": "max"}})
    with pytest.raises(ConfigError, match="gguf_file"):
        from_dict(AffectGPTConfig, {**base, "gguf_file": "absent.gguf"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_flash_attention_on_cpu_is_a_clear_error(make_config):
    assert resolve_attn_implementation("auto") == "sdpa"
    with pytest.raises(AttentionBackendError, match="CUDA"):
        AffectGPT.from_config(make_config(attn_implementation="flash_attention_2"))


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "configs" / "models").glob("*-tiny.yaml")))
def test_shipped_recipes_build_the_model(recipe, in_project, samples):
    cfg = load_config(AffectGPTConfig, REPO / "configs" / "models" / recipe, ["num_frames=4"])
    model = AffectGPT.from_config(cfg)
    assert torch.isfinite(model(**model.collator()(samples(2))).loss)


def test_swapping_the_backbone_is_one_key(in_project):
    cfg = load_config(AffectGPTConfig, REPO / "configs/models/llama-tiny.yaml", ["llm=models/llm/gemma-tiny"])
    assert type(AffectGPT.from_config(cfg).llm).__name__ == "GemmaForCausalLM"
