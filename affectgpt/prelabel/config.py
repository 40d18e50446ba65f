"""The pre-labelling recipe (``configs/prelabel.yaml``), read with ``affectgpt.config.load_config``.

Every model is a local directory (or, for the describers, an AffectGPT recipe ``.yaml``). Relative paths are
resolved against a root directory by ``PrelabelConfig.resolve``: the job runs in an uploaded copy of the
project, where ``models/`` is absent, so the job passes the real project directory as that root.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

VISUAL_INSTRUCTION = (
    "Describe only what can be seen: the facial expression, gaze, head and body movements of the person. "
    "Name the emotions these visual clues suggest."
)
ACOUSTIC_INSTRUCTION = (
    "Describe only what can be heard: the tone, pitch, loudness, speaking rate and trembling of the voice. "
    "Name the emotions these acoustic clues suggest."
)
# Short and explicit: a 135M model follows this one (longer, EMER-structured prompts are cut off by
# max_new_tokens before the emotion words); give a 7B merger the EMER structure in the config instead.
MERGE_INSTRUCTION = (
    "Describe the emotional state of the person in this clip from the clues below, in one or two short "
    "sentences, then end with \"Therefore, the person feels\" and one to three emotion words."
)
TRANSLATE_INSTRUCTION = "Translate the following description into Chinese. Reply with the translation only."
DEFAULT_INSTRUCTIONS = {"visual": VISUAL_INSTRUCTION, "acoustic": ACOUSTIC_INSTRUCTION, "merge": MERGE_INSTRUCTION,
                        "translate": TRANSLATE_INSTRUCTION}


@dataclass
class DecodeConfig:
    """How clips are decoded for the describers; must match what their models were built for (checked when
    an actor loads its model). Field names are those of ``AffectGPTConfig``.

    num_frames: frames per clip
    frame_size: frame side in pixels
    sample_rate: audio rate in Hz
    max_audio_seconds: audio kept per clip
    batch_size: clips per decode task
    num_cpus: CPUs per decode task
    """

    num_frames: int = 8
    frame_size: int = 224
    sample_rate: int = 16000
    max_audio_seconds: float = 10.0
    batch_size: int = 8
    num_cpus: float = 1.0

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.frame_size < 16 or self.frame_size % 16:
            raise ValueError(f"num_frames must be >= 1 and frame_size a multiple of 16, got {self.num_frames}, "
                             f"{self.frame_size}")
        if self.sample_rate < 1 or self.max_audio_seconds <= 0 or self.batch_size < 1 or self.num_cpus <= 0:
            raise ValueError("sample_rate, max_audio_seconds, batch_size and num_cpus must be > 0")


@dataclass
class StageConfig:
    """One model stage, run on a pool of ``actors`` Ray actors that each load ``model`` once.

    model: describers: an AffectGPT model dir (affectgpt export) or a recipe .yaml (untrained adapters, smoke
        runs only); merger / translator: a Hugging Face causal-LM dir with a chat template; none: off
    instruction: the stage's prompt (empty: its default prompt)
    batch_size: clips per generate call
    max_new_tokens: generation length limit
    actors: actors in the stage's pool
    num_cpus: CPUs per actor, also its torch thread count (rounded down, at least 1)
    num_gpus: GPUs per actor (none: 1 when the cluster has GPUs, else 0)
    """

    model: Path | None = None
    instruction: str = ""
    batch_size: int = 4
    max_new_tokens: int = 128
    actors: int = 1
    num_cpus: float = 1.0
    num_gpus: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.actors < 1:
            raise ValueError(f"batch_size, max_new_tokens and actors must be >= 1, got {self.batch_size}, "
                             f"{self.max_new_tokens}, {self.actors}")
        if self.num_cpus <= 0 or (self.num_gpus is not None and self.num_gpus < 0):
            raise ValueError(f"num_cpus must be > 0 and num_gpus >= 0, got {self.num_cpus}, {self.num_gpus}")


@dataclass
class PrelabelConfig:
    """The pre-labelling job's stages (``configs/prelabel.yaml``); each section's flags carry its name.

    require_labels: a merged description in which the lexicon finds no emotion of the person is malformed
        output, recorded in failed.csv rather than written to coarse.csv with empty labels
    """

    decode: DecodeConfig = field(default_factory=DecodeConfig, metadata={"flag_prefix": "decode-"})
    visual: StageConfig = field(default_factory=StageConfig, metadata={"flag_prefix": "visual-"})
    acoustic: StageConfig = field(default_factory=StageConfig, metadata={"flag_prefix": "acoustic-"})
    merge: StageConfig = field(default_factory=StageConfig, metadata={"flag_prefix": "merge-"})
    translate: StageConfig = field(default_factory=StageConfig, metadata={"flag_prefix": "translate-"})
    require_labels: bool = True

    def __post_init__(self) -> None:
        for name, default in DEFAULT_INSTRUCTIONS.items():
            stage = getattr(self, name)
            if stage.model is None and name != "translate":
                raise ValueError(f"{name}.model is required (only translate is optional)")
            if not stage.instruction.strip():
                stage.instruction = default

    def resolve(self, root: Path) -> PrelabelConfig:
        """A copy with every model path absolute (relative ones joined to ``root``) and checked to exist."""
        stages = {}
        for name in ("visual", "acoustic", "merge", "translate"):
            stage = getattr(self, name)
            if stage.model is None:
                continue
            path = stage.model if stage.model.is_absolute() else root / stage.model
            if not path.exists():
                raise ValueError(f"{name}.model: {path} does not exist (relative paths are resolved against "
                                 f"{root}; run `affectgpt zoo build --out models/` for the local zoo)")
            stages[name] = dataclasses.replace(stage, model=path)
        return dataclasses.replace(self, **stages)
