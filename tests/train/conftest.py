"""Session fixtures for the training tests: a tiny model zoo, a recipe pointing at it, and synthetic shards.

Packing runs ``affectgpt.packing.pack_split`` in this process (the Ray job's path, without Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from . import ds_launch as launch

ROOT = launch.ROOT


# Small frames keep a training step well under a second on 2 CPU cores; recipe and pack config must agree.
FRAMES, FRAME_SIZE = 4, 32


def pack_split(corpus: Path, split: str, out: Path, samples_per_shard: int = 8) -> Path:
    from affectgpt.packing import pack_split as pack
    from shards.schema import PackConfig

    cfg = PackConfig(frames=FRAMES, size=FRAME_SIZE, max_audio_seconds=4.0, samples_per_shard=samples_per_shard)
    pack(corpus, split, str(out), cfg, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory) -> Path:
    """configs/models/qwen2-tiny.yaml (tied embeddings) with its zoo built in a temp dir (absolute paths)."""
    from affectgpt.model.zoo import build_zoo

    root = tmp_path_factory.mktemp("zoo")
    entries = {"llm": "llm/qwen2-tiny", "video": "video/clip-tiny", "audio": "audio/whisper-tiny"}
    status = build_zoo(root / "models", only=list(entries.values()), seed=0)
    assert all(s.split(":")[0] in ("built", "exists") for s in status.values()), status
    recipe = yaml.safe_load((ROOT / "configs" / "models" / "qwen2-tiny.yaml").read_text())
    recipe.update(num_frames=FRAMES, frame_size=FRAME_SIZE, max_audio_seconds=4.0)
    recipe["llm"] = str(root / "models" / entries["llm"])
    recipe["video"]["encoder"] = str(root / "models" / entries["video"])
    recipe["audio"]["encoder"] = str(root / "models" / entries["audio"])
    path = root / "qwen2-tiny.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def train_shards(synth_corpus, tmp_path_factory) -> dict[str, Path]:
    """The synthetic corpus's coarse and fine splits as shard dirs."""
    root = tmp_path_factory.mktemp("shards")
    return {split: pack_split(synth_corpus, split, root / split) for split in ("coarse", "fine")}


@pytest.fixture(scope="session")
def stage1(tiny_recipe, train_shards, tmp_path_factory) -> Path:
    """One uninterrupted Stage 1 run (2 ZeRO-3 ranks): its checkpoint dir. Tests copy it before changing it."""
    tmp = tmp_path_factory.mktemp("stage1")
    ckpt = tmp / "ckpt"
    rc = launch.run(launch.stage1_cmd(tiny_recipe, train_shards, ckpt), tmp / "log.txt", timeout=300)
    assert rc == 0, (tmp / "log.txt").read_text()[-4000:]
    return ckpt
