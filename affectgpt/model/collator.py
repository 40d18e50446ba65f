"""Samples (numpy, see docs/CONTRACTS.md) -> tensors for ``AffectGPT.forward`` / ``generate``.

Three layouts:
- training, padded: ``input_ids``, ``attention_mask``, ``labels`` ``[B, L]``, right padding;
- training, packed: ``input_ids``, ``labels``, ``position_ids`` ``[1, sum of lengths]``, no padding at all; the
  restarting ``position_ids`` tell every attention backend where sequences begin (FlashAttention-2 turns them
  into cu_seqlens, SDPA/eager into a block-diagonal causal mask), so packed loss equals padded loss.
  ``split_packed`` cuts such a batch into consecutive rows of at most a token budget (``max_tokens``), each a
  packed batch of its own, forwarded in turn: activation memory then follows the budget, not the batch size;
- generation: prompt only, ``input_ids``, ``attention_mask`` ``[B, L]``, left padding.
Modality inputs are per sample either way, as the shards hold them: ``frames`` uint8 ``[B, T, H, W, 3]`` +
``has_video [B]``; ``audio`` float32 ``[B, N]`` (16 kHz, zero-padded to the longest clip) + ``audio_lengths [B]``
+ ``has_audio [B]``. The model turns them into its encoders' inputs on its own device, in one batched call
each (``affectgpt.model.preprocess``): the collator only tokenises and stacks, so DataLoader workers spend their
time decoding and the batches they send are the compact uint8 frames.

The collator is a plain dataclass of a tokenizer and a few sizes, so DataLoader workers can pickle it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from affectgpt.model.prompt import IGNORE_INDEX, PromptBuilder

Sample = Mapping[str, Any]


@dataclass
class VideoInputs:
    num_frames: int
    frame_size: int  # of the stand-in frames for a batch where no sample has video

    def __call__(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        clips = []
        for s in samples:
            clip = np.asarray(s["frames"])
            if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
                raise ValueError(f"{s.get('name', '?')}: frames must be uint8 [T, H, W, 3], got {clip.dtype} "
                                 f"{list(clip.shape)}")
            if len(clip) and len(clip) != self.num_frames:
                raise ValueError(f"{s.get('name', '?')}: {len(clip)} frames, the model expects {self.num_frames}")
            clips.append(clip)
        shape = next((c.shape for c in clips if len(c)), (self.num_frames, self.frame_size, self.frame_size, 3))
        frames = np.empty((len(samples), *shape), np.uint8)
        for i, (s, clip) in enumerate(zip(samples, clips, strict=True)):
            if not len(clip):
                # No frames: the model substitutes its learned "missing video" tokens; these pixels are never used.
                frames[i] = 0
            elif clip.shape != shape:
                raise ValueError(f"{s.get('name', '?')}: frames {list(clip.shape)} differ from the batch's "
                                 f"{list(shape)} (pack every split with the same --size)")
            else:
                frames[i] = clip
        return {"frames": torch.from_numpy(frames), "has_video": torch.tensor([len(c) > 0 for c in clips])}


@dataclass
class AudioInputs:
    sample_rate: int
    max_samples: int

    def __call__(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        present, waves = [], []
        for s in samples:
            wave = np.asarray(s["audio"], np.float32).reshape(-1)[: self.max_samples]
            ok = bool(s.get("has_audio", True)) and wave.size > 0
            present.append(ok)
            # No audio: a short silence keeps the batch rectangular; the model substitutes "missing audio" tokens.
            waves.append(wave if ok else np.zeros(self.sample_rate // 10, np.float32))
        audio = np.zeros((len(waves), max(len(w) for w in waves)), np.float32)
        for i, wave in enumerate(waves):
            audio[i, : len(wave)] = wave
        return {"audio": torch.from_numpy(audio), "audio_lengths": torch.tensor([len(w) for w in waves]),
                "has_audio": torch.tensor(present)}


@dataclass
class Collator:
    prompt: PromptBuilder
    video: VideoInputs | None
    audio: AudioInputs | None
    train: bool = True
    packed: bool = False
    # Packed only: the token budget of one packed row (``split_packed``); a longer sample is refused here, in
    # the loader, where its name is known.
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.packed and not self.train:
            raise ValueError("packing is for training batches; generation batches are left-padded")
        if self.max_tokens is not None and (not self.packed or self.max_tokens < 1):
            raise ValueError(f"max_tokens={self.max_tokens}: a token budget needs packed=True and is >= 1")

    def __call__(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("cannot collate an empty batch")
        batch = self.text(samples)
        if self.video is not None:
            batch.update(self.video(samples))
        if self.audio is not None:
            batch.update(self.audio(samples))
        return batch

    def text(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        subtitles = [s["subtitle"] for s in samples]
        if not self.train:
            return pad(self.prompt.prompt_ids(subtitles), self.prompt.pad_id, left=True)
        pairs = self.prompt.encode(subtitles, [s["description"] for s in samples])
        if self.max_tokens is not None:
            for s, (ids, _) in zip(samples, pairs, strict=True):
                if len(ids) > self.max_tokens:
                    raise ValueError(
                        f"{s.get('name', '?')}: {len(ids)} tokens (prompt + description), more than the packed-row "
                        f"budget data.max_tokens_per_batch={self.max_tokens}; raise the budget to at least the "
                        "longest sample, or lower the recipe's max_subtitle_tokens / max_description_tokens")
        if self.packed:
            return pack(pairs)
        batch = pad([ids for ids, _ in pairs], self.prompt.pad_id, left=False)
        batch["labels"] = pad([labels for _, labels in pairs], IGNORE_INDEX, left=False)["input_ids"]
        return batch


def pad(seqs: list[list[int]], value: int, left: bool) -> dict[str, torch.Tensor]:
    lengths = np.array([len(s) for s in seqs])
    width = int(lengths.max())
    ids = np.full((len(seqs), width), value, np.int64)
    for i, s in enumerate(seqs):
        ids[i, slice(width - len(s), width) if left else slice(0, len(s))] = s
    columns = np.arange(width)[None, :]
    mask = columns >= width - lengths[:, None] if left else columns < lengths[:, None]
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask.astype(np.int64))}


def pack(pairs: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """Concatenate examples into one row. Each starts with (masked) prompt tokens, so no label crosses a border."""
    ids = [t for seq, _ in pairs for t in seq]
    labels = [t for _, lab in pairs for t in lab]
    positions = [p for seq, _ in pairs for p in range(len(seq))]
    return {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "labels": torch.tensor([labels], dtype=torch.long),
        "position_ids": torch.tensor([positions], dtype=torch.long),
    }


# Per-sample tensors of a batch (first dimension: the samples), as VideoInputs and AudioInputs make them.
SAMPLE_KEYS = ("frames", "has_video", "audio", "audio_lengths", "has_audio")
# The packed row's own tensors ([1, tokens]).
ROW_KEYS = ("input_ids", "labels", "position_ids")


def sample_lengths(batch: Mapping[str, torch.Tensor]) -> list[int]:
    """Token count of each sample in a packed batch, read from where its ``position_ids`` restart at 0."""
    positions = batch.get("position_ids")
    if positions is None or positions.shape[0] != 1 or "attention_mask" in batch:
        raise ValueError("not a packed batch (one row of restarting position_ids, no attention_mask): "
                         f"keys {sorted(batch)}")
    starts = (positions[0] == 0).nonzero().flatten().tolist()
    return [end - start for start, end in zip(starts, [*starts[1:], positions.shape[1]], strict=True)]


def row_groups(lengths: Sequence[int], max_tokens: int, rows: int | None = None) -> list[range]:
    """Consecutive samples grouped into rows of at most ``max_tokens`` tokens, greedily in order (the fewest
    rows). With ``rows``, exactly that many (data-parallel ranks must run the same number of forward passes):
    greedy until the samples left are as many as the rows left, then one sample per row."""
    if any(n > max_tokens for n in lengths):
        raise ValueError(f"a sample of {max(lengths)} tokens does not fit the {max_tokens}-token row budget")
    if rows is not None and not 1 <= rows <= len(lengths):
        raise ValueError(f"cannot make {rows} rows from {len(lengths)} samples")
    groups, start, tokens = [], 0, 0
    for i, n in enumerate(lengths):
        full = tokens + n > max_tokens
        # Rows still to open after this one, and samples still to place (this one included).
        forced = rows is not None and len(lengths) - i == rows - len(groups) - 1
        if i > start and (full or forced):
            groups.append(range(start, i))
            start, tokens = i, 0
        tokens += n
    groups.append(range(start, len(lengths)))
    if rows is not None and len(groups) != rows:  # fewer rows than the greedy count cannot hold the samples
        raise ValueError(f"cannot make {rows} rows of at most {max_tokens} tokens from samples of {list(lengths)}")
    return groups


def split_packed(batch: Mapping[str, torch.Tensor], max_tokens: int, rows: int | None = None,
                 ) -> list[dict[str, torch.Tensor]]:
    """A packed batch as consecutive packed batches of at most ``max_tokens`` tokens each (``row_groups``).
    Each sample keeps its tensors exactly (audio keeps the batch's padded width, which some feature extractors
    normalise over), so the rows' summed loss and gradients are the whole batch's."""
    lengths = sample_lengths(batch)
    unknown = set(batch) - set(SAMPLE_KEYS) - set(ROW_KEYS)
    if unknown:
        raise ValueError(f"split_packed: unknown batch keys {sorted(unknown)}")
    bounds = np.cumsum([0, *lengths]).tolist()
    out = []
    for group in row_groups(lengths, max_tokens, rows):
        tokens = slice(bounds[group.start], bounds[group.stop])
        row = {k: batch[k][:, tokens] for k in ROW_KEYS if k in batch}
        row.update({k: batch[k][group.start:group.stop] for k in SAMPLE_KEYS if k in batch})
        out.append(row)
    return out
