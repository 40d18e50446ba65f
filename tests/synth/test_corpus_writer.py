import csv
from collections import Counter

import numpy as np
import pytest

from affectgpt.corpus import read_split
from affectgpt.media import decode_clip
from affectgpt.synth.corpus_writer import SynthConfig, plan_sample, task_variants, write_corpus
from affectgpt.synth.emotions import BASE_WEIGHTS, BASES, VOCABULARY
from affectgpt.synth.face import Identity, render_face
from affectgpt.synth.voice import synthesize_voice


def test_corpus_layout_and_decoding(synth_corpus):
    total = 0
    for split, expected in {"coarse": 28, "fine": 5, "val": 1, "test": 6}.items():
        records = read_split(synth_corpus, split)
        assert len(records) == expected
        total += len(records)
        for record in records[:3]:
            clip = decode_clip(record.video, num_frames=8, size=224, sample_rate=16000)
            assert clip.frames.shape == (8, 224, 224, 3)
            assert clip.frames.dtype == np.uint8
            assert clip.audio is not None
            # 3 s of audio at 16 kHz; AAC adds up to ~2 frames of encoder padding
            assert 3 * 16000 <= clip.audio.size <= 3 * 16000 + 2 * 1024 * 16000 // 22050 + 1
            assert clip.duration == pytest.approx(3.0, abs=0.2)
    assert total == 40
    assert len(list((synth_corpus / "videos").glob("*.mp4"))) == 40


def test_fine_descriptions_reason_over_three_modalities(synth_corpus):
    for record in read_split(synth_corpus, "fine"):
        d = record.description
        assert d.index("In the video") < d.index("In the audio") < d.index("In the text") < d.index("Therefore")
        assert record.subtitle in d
        assert record.labels and all(label in d for label in record.labels)


def test_same_seed_same_csv_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_corpus(SynthConfig(out=a, num=12, seed=3))
    write_corpus(SynthConfig(out=b, num=12, seed=3, workers=2))
    for split in ("coarse", "fine", "test"):
        assert (a / f"{split}.csv").read_bytes() == (b / f"{split}.csv").read_bytes()
    write_corpus(SynthConfig(out=tmp_path / "c", num=12, seed=4))
    assert (a / "coarse.csv").read_bytes() != (tmp_path / "c" / "coarse.csv").read_bytes()


def test_rerun_keeps_finished_videos(tmp_path):
    cfg = SynthConfig(out=tmp_path, num=6, seed=1)
    write_corpus(cfg)
    video = next((tmp_path / "videos").glob("*.mp4"))
    stamp = video.stat().st_mtime_ns
    write_corpus(cfg)
    assert video.stat().st_mtime_ns == stamp
    assert not list((tmp_path / "videos").glob(".*.tmp"))


def test_label_noise_rate_is_close_to_configured():
    cfg = SynthConfig(out=None, num=2000, label_noise=0.25)
    samples = [plan_sample(cfg, i, "coarse") for i in range(2000)]
    wrong = sum(s.noisy_labels != s.labels for s in samples) / len(samples)
    assert 0.21 < wrong < 0.29
    clean = [plan_sample(cfg, i, "fine") for i in range(200)]
    assert all(s.noisy_labels == s.labels for s in clean)


def test_vocabulary_and_balance():
    assert len(BASES) >= 6
    assert sum(len(words) for words in VOCABULARY.values()) >= 20
    cfg = SynthConfig(out=None, num=1000)
    bases = Counter(plan_sample(cfg, i, "fine").base for i in range(1000))
    assert set(bases) == set(BASES)
    for base, weight in BASE_WEIGHTS.items():
        assert 0.4 * weight * 1000 < bases[base] < 1.6 * weight * 1000
    subtitles = {plan_sample(cfg, i, "fine").subtitle for i in range(300)}
    assert len(subtitles) > 150


def test_cues_separate_emotions_in_pixels_and_audio():
    """A smile and a frown produce different mouth pixels; a sad voice is lower than a happy one."""
    rng = np.random.default_rng(0)
    who = Identity.sample(rng)
    happy = render_face(BASES["happy"], who, 8, 96, 8, np.random.default_rng(1))[-1].astype(float)
    sad = render_face(BASES["sad"], who, 8, 96, 8, np.random.default_rng(1))[-1].astype(float)
    assert np.abs(happy - sad).mean() > 1.0

    def pitch(signal, sr=16000):
        # harmonic sum: the f0 whose multiples collect the most spectral energy
        spectrum = np.abs(np.fft.rfft(signal))
        hz_per_bin = sr / signal.size
        candidates = np.arange(80, 400)
        score = [sum(spectrum[int(k * f / hz_per_bin)] for k in range(1, 6)) for f in candidates]
        return candidates[int(np.argmax(score))]

    high = synthesize_voice(BASES["happy"], 1.0, 2.0, 16000, np.random.default_rng(2))
    low = synthesize_voice(BASES["sad"], 1.0, 2.0, 16000, np.random.default_rng(2))
    assert pitch(high) > 1.3 * pitch(low)
    assert np.sqrt((high**2).mean()) > np.sqrt((low**2).mean())


def test_val_split_and_task_variants(tmp_path):
    from affectgpt.eval.lexicon import VALENCES

    assert SynthConfig(out=tmp_path, num=200).split_sizes() == {"coarse": 130, "fine": 32, "val": 8, "test": 30}
    # the validation clips come out of the fine share: coarse and test keep their size and members
    assert SynthConfig(out=tmp_path, num=200, val_fraction=0).split_sizes()["fine"] == 40
    test = [{"name": f"sample_{i:08d}", "subtitle": "s", "description": "d", "labels": "x"} for i in range(30)]
    variants = task_variants(SynthConfig(out=tmp_path, num=30, seed=0), test)
    bases = [plan_sample(SynthConfig(out=tmp_path, num=30, seed=0), i, "test").base for i in range(30)]
    assert [r["labels"] for r in variants["test_discrete"]] == [VOCABULARY[b][0] for b in bases]
    sentiment = [r["labels"] for r in variants["test_sentiment"]]
    assert set(sentiment) <= set(VALENCES) and {"positive", "negative"} <= set(sentiment)
    assert all(s == "positive" for s, b in zip(sentiment, bases, strict=True) if b == "happy")
    assert [r["description"] for r in variants["test_discrete"]] == ["d"] * 30


def test_csv_columns(synth_corpus):
    with (synth_corpus / "coarse.csv").open(encoding="utf-8") as f:
        assert csv.DictReader(f).fieldnames == ["name", "subtitle", "description", "labels"]


@pytest.mark.parametrize("bad", [dict(num=0), dict(label_noise=1.5), dict(fine_fraction=0.7, test_fraction=0.5)])
def test_config_validation(bad, tmp_path):
    with pytest.raises(ValueError):
        SynthConfig(out=tmp_path, **bad)
