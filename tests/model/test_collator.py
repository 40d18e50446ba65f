"""Prompt building and collation: what is masked, how rows are padded or packed, input checks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from affectgpt.model import AffectGPT
from affectgpt.model.prompt import AUDIO_TOKEN, IGNORE_INDEX, VIDEO_TOKEN


@pytest.fixture(scope="module")
def model(zoo):
    from affectgpt.config import from_dict
    from affectgpt.model import AffectGPTConfig

    cfg = from_dict(AffectGPTConfig, {
        "llm": str(zoo / "llm/qwen2-tiny"), "num_frames": 4,
        "video": {"encoder": str(zoo / "video/clip-tiny"), "num_queries": 5},
        "audio": {"encoder": str(zoo / "audio/hubert-tiny"), "num_queries": 2},
    })
    return AffectGPT.from_config(cfg)


def test_labels_mask_exactly_the_prompt(model, samples):
    batch_samples = samples(3)
    batch = model.collator()(batch_samples)
    tok = model.tokenizer
    for row, sample in enumerate(batch_samples):
        labels, ids = batch["labels"][row], batch["input_ids"][row]
        trained = labels != IGNORE_INDEX
        assert tok.decode(labels[trained]) == sample["description"] + tok.eos_token
        assert torch.equal(labels[trained], ids[trained])
        # Everything before the description is prompt (masked); everything after it is padding (masked).
        first = int(trained.nonzero()[0])
        prompt = tok.decode(ids[:first])
        assert prompt.endswith("<|im_start|>assistant\n") and sample["subtitle"] in prompt
        assert not trained[:first].any() and trained[first:first + int(trained.sum())].all()
        length = int(batch["attention_mask"][row].sum())
        assert (ids[length:] == tok.pad_token_id).all() and first + int(trained.sum()) == length


def test_placeholder_counts_and_modality_tensors(model, samples):
    batch = model.collator()(samples(2))
    assert ((batch["input_ids"] == model.token_ids[VIDEO_TOKEN]).sum(1) == 5).all()
    assert ((batch["input_ids"] == model.token_ids[AUDIO_TOKEN]).sum(1) == 2).all()
    # Raw frames and waveforms, as the shards hold them: the model's preprocessing makes the encoder inputs.
    assert batch["frames"].dtype == torch.uint8 and batch["frames"].shape == (2, 4, 24, 24, 3)
    assert batch["has_video"].tolist() == [True, True] and batch["has_audio"].tolist() == [True, True]
    assert batch["audio"].dtype == torch.float32 and batch["audio"].shape == (2, 16000)
    assert batch["audio_lengths"].tolist() == [16000, 16000]


def test_subtitle_cannot_inject_placeholders(model, samples):
    sample = samples(1)[0]
    sample["subtitle"] = f"look {VIDEO_TOKEN}{VIDEO_TOKEN} here"
    batch = model.collator()([sample])
    assert (batch["input_ids"] == model.token_ids[VIDEO_TOKEN]).sum() == 5


def test_long_text_is_truncated_to_the_limits(model, samples):
    sample = samples(1)[0]
    sample["subtitle"] = "word " * 1000
    sample["description"] = "calm " * 1000
    batch = model.collator()([sample])
    cfg = model.config
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == cfg.max_description_tokens + 1  # + end token
    assert batch["input_ids"].shape[1] < cfg.max_subtitle_tokens + cfg.max_description_tokens + 120


def test_packed_rows_restart_positions(model, samples):
    batch_samples = samples(3)
    padded = model.collator()(batch_samples)
    packed = model.collator(packed=True)(batch_samples)
    lengths = padded["attention_mask"].sum(1).tolist()
    assert packed["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in packed
    starts = np.cumsum([0, *lengths[:-1]])
    assert (packed["position_ids"][0, starts] == 0).all()
    assert int((packed["position_ids"][0] == 0).sum()) == 3
    # The same tokens and labels as the padded rows, without the padding.
    real = padded["attention_mask"].bool()
    assert torch.equal(packed["input_ids"][0], padded["input_ids"][real])
    assert torch.equal(packed["labels"][0], padded["labels"][real])
    with pytest.raises(ValueError, match="packing"):
        model.collator(train=False, packed=True)


def test_generation_batches_are_left_padded_prompts(model, samples):
    batch = model.collator(train=False)(samples(3))
    assert "labels" not in batch
    mask = batch["attention_mask"]
    assert (mask[:, -1] == 1).all() and (mask[:, 0] == 0).any()
    rows = model.tokenizer.batch_decode(batch["input_ids"])
    assert all(row.endswith("<|im_start|>assistant\n") for row in rows)


def test_input_checks(model, samples):
    bad = samples(1)[0]
    bad["frames"] = bad["frames"][:3]
    with pytest.raises(ValueError, match="sample_00000000: 3 frames, the model expects 4"):
        model.collator()([bad])
    bad["frames"] = np.zeros((4, 8, 8), np.uint8)
    with pytest.raises(ValueError, match=r"frames must be uint8 \[T, H, W, 3\]"):
        model.collator()([bad])
    with pytest.raises(ValueError, match="empty batch"):
        model.collator()([])


def test_collator_pickles(model, samples):
    collate = model.collator(packed=True)
    batch_samples = samples(2)
    again = pickle.loads(pickle.dumps(collate))(batch_samples)
    for key, value in collate(batch_samples).items():
        assert torch.equal(value, again[key]), key


def fewest_rows(lengths, budget):
    """Exhaustive reference: the fewest consecutive groups of at most ``budget`` tokens (dynamic programming)."""
    best = [0] + [len(lengths) + 1] * len(lengths)
    for end in range(1, len(lengths) + 1):
        for start in range(end):
            if sum(lengths[start:end]) <= budget:
                best[end] = min(best[end], best[start] + 1)
    return best[-1]


def test_row_groups_are_consecutive_within_budget_and_as_many_as_asked():
    from affectgpt.model.collator import row_groups

    rng = np.random.default_rng(0)
    for _ in range(300):
        lengths = rng.integers(1, 40, int(rng.integers(1, 9))).tolist()
        budget = int(rng.integers(max(lengths), 2 * sum(lengths) + 1))
        greedy = row_groups(lengths, budget)
        assert len(greedy) == fewest_rows(lengths, budget)
        for rows in range(len(greedy), len(lengths) + 1):
            groups = greedy if rows == len(greedy) and rng.random() < 0.5 else row_groups(lengths, budget, rows)
            assert len(groups) == rows and all(len(g) for g in groups)
            assert [i for g in groups for i in g] == list(range(len(lengths)))  # consecutive, in order, all
            assert all(sum(lengths[i] for i in g) <= budget for g in groups)
        with pytest.raises(ValueError, match="cannot make"):
            row_groups(lengths, budget, len(lengths) + 1)
        if len(greedy) > 1:
            with pytest.raises(ValueError, match="cannot make"):
                row_groups(lengths, budget, len(greedy) - 1)
    with pytest.raises(ValueError, match="a sample of 9 tokens does not fit the 8-token row budget"):
        row_groups([3, 9, 2], 8)


def test_split_packed_rows_are_the_batch_cut_at_sample_borders(model, samples):
    from affectgpt.model.collator import ROW_KEYS, SAMPLE_KEYS, sample_lengths, split_packed

    batch = model.collator(packed=True)(samples(5))
    lengths = sample_lengths(batch)
    assert len(lengths) == 5 and sum(lengths) == batch["input_ids"].shape[1]
    budget = max(lengths[0] + lengths[1], *lengths)  # the first row holds (at least) two samples
    rows = split_packed(batch, budget)
    assert 1 < len(rows) < 5
    for row in rows:
        assert row["input_ids"].shape[1] <= budget and row["position_ids"][0, 0] == 0
        assert set(row) == set(batch)
        assert row["frames"].shape[0] == int((row["position_ids"][0] == 0).sum())
    for key in ROW_KEYS:
        assert torch.equal(torch.cat([row[key] for row in rows], dim=1), batch[key]), key
    for key in SAMPLE_KEYS:  # audio keeps the batch's padded width
        assert torch.equal(torch.cat([row[key] for row in rows]), batch[key]), key
    assert len(split_packed(batch, budget, rows=5)) == 5
    with pytest.raises(ValueError, match="unknown batch keys"):
        split_packed({**batch, "extra": batch["labels"]}, budget)
    with pytest.raises(ValueError, match="not a packed batch"):
        split_packed(model.collator()(samples(2)), budget)


def test_a_sample_over_the_budget_is_refused_by_name(model, samples):
    batch_samples = samples(3)
    pairs = model.collator().prompt.encode([s["subtitle"] for s in batch_samples],
                                           [s["description"] for s in batch_samples])
    lengths = [len(ids) for ids, _ in pairs]
    longest = int(np.argmax(lengths))
    collate = model.collator(packed=True, max_tokens=max(lengths) - 1)
    with pytest.raises(ValueError, match=f"sample_{longest:08d}: {max(lengths)} tokens .* "
                                         f"data.max_tokens_per_batch={max(lengths) - 1}"):
        collate(batch_samples)
    assert model.collator(packed=True, max_tokens=max(lengths))(batch_samples)["input_ids"].shape[1] == sum(lengths)
    for bad in ({"packed": False, "max_tokens": 64}, {"packed": True, "max_tokens": 0}):
        with pytest.raises(ValueError, match="token budget needs packed=True"):
            model.collator(**bad)
