"""The pre-labelling stages. Each works on a batch of rows (plain dicts, one per clip) and either fills its
output field or marks the row failed; rows that failed earlier are passed through untouched (``apply``).

    decode -> visual (Describer) -> acoustic (Describer) -> merge (ChatStage) -> labels (LabelStage)
           -> translate (ChatStage, optional)

A row holds ``ROW_FIELDS`` (all strings except ``row``) plus, between decode and the describers, the decoded
``frames``/``audio``/``has_audio``, plus ``seconds_<stage>``: that stage's busy time per sample of its batch.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from affectgpt.corpus import Record
from affectgpt.model.chat_lm import ChatLM
from affectgpt.prelabel.config import DecodeConfig, StageConfig

log = logging.getLogger(__name__)

Row = dict[str, Any]
STAGES = ("input", "decode", "visual", "acoustic", "merge", "labels", "translate")
# What a finished sample keeps (the store's record); ``error`` is empty for a labelled sample.
ROW_FIELDS = ("name", "row", "subtitle", "error", "stage", "visual", "acoustic", "description", "labels",
              "translation")
NO_AUDIO = "The clip has no audio track."


class Stage(Protocol):
    name: str

    def process(self, rows: list[Row]) -> None:
        """Fill this stage's output of each row, or ``fail`` it."""


def new_row(record: Record) -> Row:
    row: Row = dict.fromkeys(ROW_FIELDS, "")
    row.update(name=record.name, row=record.row, subtitle=record.subtitle, video=str(record.video))
    return row


def fail(row: Row, stage: str, reason: str) -> None:
    row["error"], row["stage"] = reason, stage


def apply(stage: Stage, rows: list[Row]) -> list[Row]:
    """Run ``stage`` on the rows that have not failed and record its time per sample. A batch that raises is
    retried sample by sample, so one clip that breaks a model fails alone instead of stopping the job."""
    todo = [r for r in rows if not r["error"]]
    start = time.perf_counter()
    if todo:
        try:
            stage.process(todo)
        except Exception as batch_error:  # noqa: BLE001 - model code raises anything; the samples decide
            log.warning("%s: a batch of %d raised %r; retrying one by one", stage.name, len(todo), batch_error)
            for row in todo:
                try:
                    stage.process([row])
                except Exception as e:  # noqa: BLE001
                    fail(row, stage.name, f"{type(e).__name__}: {e}")
    share = (time.perf_counter() - start) / max(len(todo), 1)
    done = {id(r) for r in todo}
    for row in rows:
        row[f"seconds_{stage.name}"] = share if id(row) in done else 0.0
    return rows


class Decode:
    """Frames and audio exactly as the pack job stores them (JPEG, int16), so a describer sees its clips as it
    saw them in training."""

    name = "decode"

    def __init__(self, cfg: DecodeConfig):
        self.cfg = cfg

    def process(self, rows: list[Row]) -> None:
        from affectgpt.media import MediaError
        from affectgpt.packing import clip_sample

        for row in rows:
            try:
                sample = clip_sample(row["video"], self.cfg, row["subtitle"])
            except MediaError as e:
                fail(row, self.name, e.reason)
                continue
            row.update(frames=sample["frames"], audio=sample["audio"], has_audio=sample["has_audio"])


def blank_media(rows: list[Row], cfg: DecodeConfig) -> None:
    """Give rows without decoded media empty stand-ins, so every batch has the same columns and shapes."""
    for row in rows:
        if "frames" not in row:
            row.update(frames=np.zeros((cfg.num_frames, cfg.frame_size, cfg.frame_size, 3), np.uint8),
                       audio=np.zeros(0, np.float32), has_audio=False)


class Describer:
    """An AffectGPT model prompted for one modality: the other is passed as missing (the model's learned
    "missing" embedding) and the subtitle left empty, so the clues come from that modality alone."""

    def __init__(self, name: Literal["visual", "acoustic"], cfg: StageConfig, decode: DecodeConfig, root: Path):
        import torch

        self.name, self.cfg = name, cfg
        torch.set_num_threads(torch_threads(cfg.num_cpus))
        self.model = load_affectgpt(cfg.model, cfg.instruction, root)
        recipe = self.model.config
        branch = "video" if name == "visual" else "audio"
        if getattr(recipe, branch) is None:
            raise ValueError(f"{name}.model: {cfg.model} has no {branch} encoder")
        keys = ("num_frames", "frame_size", "sample_rate", "max_audio_seconds")
        wrong = {k: (getattr(decode, k), getattr(recipe, k)) for k in keys if getattr(decode, k) != getattr(recipe, k)}
        if wrong:
            raise ValueError(f"decode settings do not match {name}.model {cfg.model} (config vs model): {wrong}")
        self.model.to("cuda" if torch.cuda.is_available() else "cpu")

    def process(self, rows: list[Row]) -> None:
        if self.name == "acoustic":
            for row in rows:
                if not row["has_audio"]:
                    row["acoustic"] = NO_AUDIO
            rows = [r for r in rows if r["has_audio"]]
        if not rows:
            return
        texts = self.model.generate([self.sample(r) for r in rows], max_new_tokens=self.cfg.max_new_tokens)
        for row, text in zip(rows, texts, strict=True):
            if text.strip():
                row[self.name] = text.strip()
            else:
                fail(row, self.name, "empty generation")

    def sample(self, row: Row) -> dict[str, Any]:
        frames = np.asarray(row["frames"])
        sample = {"name": row["name"], "subtitle": "", "description": "", "frames": frames,
                  "audio": np.zeros(0, np.float32), "has_audio": False}
        if self.name == "acoustic":
            sample.update(frames=frames[:0], audio=np.asarray(row["audio"], np.float32), has_audio=True)
        return sample


class ChatStage:
    """``merge``: clues + subtitle -> the reasoning description. ``translate``: description -> translation.
    The instruction goes into the user turn: some chat templates (Gemma's) refuse a system role."""

    def __init__(self, name: Literal["merge", "translate"], cfg: StageConfig, lm: ChatLM | None = None):
        self.name, self.cfg = name, cfg
        self.output = "description" if name == "merge" else "translation"
        self.lm = lm or ChatLM(cfg.model, torch_threads(cfg.num_cpus))

    def process(self, rows: list[Row]) -> None:
        texts = self.lm.generate([self.messages(r) for r in rows], self.cfg.max_new_tokens)
        for row, text in zip(rows, texts, strict=True):
            if text:
                row[self.output] = text
            else:
                fail(row, self.name, "empty generation")

    def messages(self, row: Row) -> list[dict[str, str]]:
        if self.name == "merge":
            body = (f"Visual clues: {row['visual']}\nAcoustic clues: {row['acoustic']}\n"
                    f"Subtitle: \"{row['subtitle']}\"")
        else:
            body = row["description"]
        return [{"role": "user", "content": f"{self.cfg.instruction}\n\n{body}"}]


class LabelStage:
    """Emotion labels of the merged description by the project's lexicon extractor (quoted subtitle words and
    denied emotions are not the person's)."""

    name = "labels"

    def __init__(self, require_labels: bool):
        from affectgpt.eval.extract import LexiconExtractor

        self.require_labels = require_labels
        self.extractor = LexiconExtractor()

    def process(self, rows: list[Row]) -> None:
        for row in rows:
            labels = self.extractor.extract(row["description"]).labels
            row["labels"] = ",".join(labels)
            if not labels and self.require_labels:
                fail(row, self.name, "malformed output: the merged description names no emotion of the person")


def load_affectgpt(path: Path, instruction: str, root: Path) -> Any:
    """An AffectGPT model dir, or a recipe .yaml (its relative paths joined to ``root``) with untrained adapters."""
    import torch

    from affectgpt.model import AffectGPT
    from affectgpt.model.affectgpt import load_recipe

    if path.is_dir():
        return AffectGPT.from_pretrained(path, instruction=instruction)
    log.warning("%s is a recipe, not a trained model: its adapters are random (smoke runs only)", path)
    torch.manual_seed(0)  # the same random adapters in every actor and every run, so resumed output agrees
    return AffectGPT.from_config(load_recipe(path, root, {"instruction": instruction}))


def torch_threads(num_cpus: float) -> int:
    return max(1, int(num_cpus))
