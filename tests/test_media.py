import av
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


def test_frames_are_sampled_from_what_decodes_when_the_container_counts_more(tmp_path):
    """An mp4 whose edit list hides its first 2 frames: the index says 24, the decoder yields 22."""
    frames = np.stack([np.full((64, 64, 3), 10 * i, np.uint8) for i in range(24)])
    write_clip(tmp_path / "a.mp4", frames, fps=8, audio=None, sample_rate=16000)
    with av.open(str(tmp_path / "a.mp4")) as src, av.open(str(tmp_path / "edited.mp4"), "w", format="mp4") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.dts is not None:
                shift = 2 * packet.duration
                packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, out
                dst.mux(packet)
    with av.open(str(tmp_path / "edited.mp4")) as container:
        assert container.streams.video[0].frames == 24
        decoded = [f.to_ndarray(width=32, height=32, format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 22
    clip = decode_clip(tmp_path / "edited.mp4", num_frames=4, size=32)
    # the centres of 4 equal segments of the 22 frames that decode
    assert np.array_equal(clip.frames, np.stack([decoded[i] for i in (2, 8, 13, 19)]))
    assert clip.duration == pytest.approx(22 / 8)


def _reference_audio(path, sample_rate):
    """What PyAV's own resampler makes of the whole track."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    with av.open(str(path)) as container:
        frames = [*container.decode(audio=0), None]
        return np.concatenate([out.to_ndarray().reshape(-1) for f in frames for out in resampler.resample(f)])


@pytest.mark.parametrize("max_seconds", [0.3, 10.0])
def test_stereo_44k_audio_is_downmixed_and_resampled_like_pyav(tmp_path, max_seconds):
    path, rate = tmp_path / "stereo.mp4", 44100
    t = np.arange(rate) / rate
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)]).astype(np.float32) * 0.8
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=8)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="stereo")
        for _ in range(8):
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")))
        container.mux(video.encode())
        frame = av.AudioFrame.from_ndarray(stereo, format="fltp", layout="stereo")
        frame.sample_rate = rate
        container.mux(audio.encode(frame))
        container.mux(audio.encode())
    clip = decode_clip(path, num_frames=2, size=32, sample_rate=16000, max_audio_seconds=max_seconds)
    reference = _reference_audio(path, 16000)
    assert clip.audio.size == min(reference.size, int(max_seconds * 16000))
    np.testing.assert_array_equal(clip.audio, reference[: clip.audio.size])
    assert 0.2 < np.abs(clip.audio[4000:12000]).max() < 0.6  # the left channel's 0.8, halved by the downmix


def test_only_video_containers_are_decoded_whatever_the_file_name(tmp_path):
    (tmp_path / "notes.txt").write_text("she smiles\n" * 50)
    with pytest.raises(MediaError, match=r"notes.txt: not a video container: FFmpeg reads it as Tele-typewriter"):
        decode_clip(tmp_path / "notes.txt")
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    with av.open(str(tmp_path / "still.gif"), "w", format="gif") as gif:  # a GIF named like a video
        stream = gif.add_stream("gif", rate=4)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "rgb8"
        for image in frames:
            gif.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        gif.mux(stream.encode())
    (tmp_path / "still.gif").rename(tmp_path / "clip.mp4")
    with pytest.raises(MediaError, match=r"clip.mp4: not a video container: .*\(gif\)"):
        decode_clip(tmp_path / "clip.mp4")

