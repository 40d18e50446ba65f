import numpy as np
import pytest

from affectgpt.media import MediaError, decode_clip, write_clip


def test_roundtrip(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (16, 64, 64, 3), dtype=np.uint8)
    audio = np.sin(np.linspace(0, 2000, 44100)).astype(np.float32) * 0.5
    write_clip(tmp_path / "a.mp4", frames, fps=8, audio=audio, sample_rate=22050)
    clip = decode_clip(tmp_path / "a.mp4", num_frames=4, size=32, sample_rate=16000)
    assert clip.frames.shape == (4, 32, 32, 3)
    assert clip.duration == pytest.approx(2.0)
    assert abs(clip.audio.size - 32000) < 1500


def test_video_without_audio(tmp_path):
    frames = np.zeros((8, 64, 64, 3), np.uint8)
    write_clip(tmp_path / "silent.mp4", frames, fps=8, audio=None, sample_rate=16000)
    clip = decode_clip(tmp_path / "silent.mp4", num_frames=2, size=32)
    assert clip.audio is None and clip.frames.shape == (2, 32, 32, 3)


def test_bad_files_name_the_path(tmp_path, synth_corpus):
    with pytest.raises(MediaError, match="missing.mp4: file does not exist"):
        decode_clip(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match="empty.mp4: file is empty"):
        decode_clip(tmp_path / "empty.mp4")
    source = next((synth_corpus / "videos").glob("*.mp4")).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(source[: len(source) // 3])
    with pytest.raises(MediaError, match="cut.mp4"):
        decode_clip(tmp_path / "cut.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"\x00not a video" * 100)
    with pytest.raises(MediaError, match="junk.mp4: undecodable"):
        decode_clip(tmp_path / "junk.mp4")
