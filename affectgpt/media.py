"""The one place that reads and writes video/audio (PyAV). Used by the synthetic corpus, the pack job and
``affectgpt describe``, so training data and inference inputs are decoded identically.

Frame sampling: ``num_frames`` frames at the centres of equal segments of the clip, resized to a square
``size`` x ``size`` RGB image (no crop: faces near the border stay in view). Audio: mono float32 at
``sample_rate`` Hz, truncated to ``max_audio_seconds``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

# FFmpeg demuxers of video containers, by the name FFmpeg's probe gives. Anything else is refused, whatever the
# file is called: FFmpeg also "demuxes" text (tty: every .txt renders as ANSI art), still images and raw streams.
VIDEO_CONTAINERS = {
    "mov,mp4,m4a,3gp,3g2,mj2": "MP4/MOV", "matroska,webm": "Matroska/WebM", "avi": "AVI", "flv": "FLV",
    "mpeg": "MPEG-PS", "mpegts": "MPEG-TS", "asf": "ASF/WMV", "ogg": "Ogg", "mxf": "MXF", "nut": "NUT",
}


class MediaError(RuntimeError):
    """A media file that cannot be decoded; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    audio: np.ndarray | None  # float32 [N] in [-1, 1]; None when the file has no audio track
    sample_rate: int
    duration: float  # seconds, of the video stream


def write_clip(path: str | Path, frames: np.ndarray, fps: int, audio: np.ndarray | None, sample_rate: int) -> None:
    """Write ``frames`` (uint8 [T,H,W,3]) as H.264 and ``audio`` (float32 mono) as AAC into an mp4."""
    path = Path(path)
    with av.open(str(path), mode="w", format="mp4") as container:
        vstream = container.add_stream("libx264", rate=fps)
        vstream.width, vstream.height = frames.shape[2], frames.shape[1]
        vstream.pix_fmt = "yuv420p"
        vstream.options = {"preset": "veryfast", "crf": "23"}
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate, layout="mono")
        for image in frames:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode())
        if astream is not None:
            pcm = np.clip(audio, -1.0, 1.0).astype(np.float32)[None, :]
            aframe = av.AudioFrame.from_ndarray(pcm, format="fltp", layout="mono")
            aframe.sample_rate = sample_rate
            container.mux(astream.encode(aframe))
            container.mux(astream.encode())


def decode_clip(
    path: str | Path,
    num_frames: int = 8,
    size: int = 224,
    sample_rate: int = 16000,
    max_audio_seconds: float = 10.0,
    threads: int = 0,
) -> Clip:
    """Decode ``num_frames`` uniformly sampled RGB frames and the resampled mono audio of a video file.

    ``threads``: video decoder and scaler threads, 0 for FFmpeg's choice (one per core). Callers that already
    run one decode per CPU (the pack job's tasks) pass 1: FFmpeg's slice threads wait for each other at every
    frame, and with every core busy that waiting left a quarter of the CPU idle. Audio is converted on one
    thread always (it is a small part of the work)."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise MediaError(path, "file is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if container.format.name not in VIDEO_CONTAINERS:
                raise MediaError(path, f"not a video container: FFmpeg reads it as {container.format.long_name} "
                                       f"({container.format.name}); expected {', '.join(VIDEO_CONTAINERS.values())}")
            if not container.streams.video:
                raise MediaError(path, "no video stream")
            read = _read_frames(container, num_frames, size, threads, trust_frame_count=True)
        if read is None:  # the container's frame count was wrong (a damaged file): decode again, keeping all
            with av.open(str(path)) as container:
                read = _read_frames(container, num_frames, size, threads, trust_frame_count=False)
        frames, duration = read
        audio = None
        with av.open(str(path)) as container:
            if container.streams.audio:
                audio = _read_audio(container, sample_rate, max_audio_seconds)
    except MediaError:
        raise
    except (av.FFmpegError, ValueError, IndexError, OSError) as e:
        raise MediaError(path, f"undecodable ({type(e).__name__}: {e})") from e
    if len(frames) == 0:
        raise MediaError(path, "no decodable video frames (truncated or corrupt)")
    return Clip(frames=frames, audio=audio, sample_rate=sample_rate, duration=duration)


def _read_frames(
    container: av.container.InputContainer, num_frames: int, size: int, threads: int, trust_frame_count: bool
) -> tuple[np.ndarray, float] | None:
    """The sampled frames and the stream's duration. Every frame must be decoded (H.264 frames depend on each
    other), but only the sampled ones are converted to RGB and resized, which for real clips (25-30 fps, 720p)
    is most of the work. That needs the frame count up front: with ``trust_frame_count`` it comes from the
    container, and None means the decoded count differed (the caller then decodes again, converting all)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    expected = stream.frames if trust_frame_count else 0
    wanted = set(_segment_centres(expected, num_frames)) if expected > 0 else None
    # One scaler for the clip: `frame.to_ndarray(width=...)` makes a new one per frame, and each new swscale
    # context starts and joins its own pool of slice threads, which left a fifth of the pack job's CPU idle.
    scaler = VideoReformatter()
    converted: dict[int, np.ndarray] = {}
    count = 0
    for count, frame in enumerate(container.decode(stream), start=1):
        if wanted is None or count - 1 in wanted:
            rgb = scaler.reformat(frame, width=size, height=size, format="rgb24", threads=threads)
            converted[count - 1] = rgb.to_ndarray()
    if wanted is not None and count != expected:
        return None
    if count == 0:
        return np.zeros((0, size, size, 3), np.uint8), 0.0
    rate = float(stream.average_rate or 25)
    return np.stack([converted[i] for i in _segment_centres(count, num_frames)]), count / rate


def _segment_centres(count: int, num_frames: int) -> list[int]:
    """Indices of the frames at the centres of ``num_frames`` equal segments; short clips repeat frames rather
    than changing the sample count."""
    return [min(count - 1, math.floor((i + 0.5) * count / num_frames)) for i in range(num_frames)]


def _read_audio(container: av.container.InputContainer, sample_rate: int, max_seconds: float) -> np.ndarray:
    limit = int(max_seconds * sample_rate)
    chunks: list[np.ndarray] = []
    total = 0
    graph = None
    for frame in container.decode(container.streams.audio[0]):
        if graph is None:
            graph = _to_mono(frame, sample_rate)
        graph.push(frame)
        drained = _drain(graph)
        chunks += drained
        total += sum(c.size for c in drained)
        if total >= limit:
            break
    else:
        if graph is not None:
            graph.push(None)
            chunks += _drain(graph)
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return audio[:limit].astype(np.float32)


def _to_mono(first: av.AudioFrame, sample_rate: int) -> av.filter.Graph:
    """A filter graph converting frames like ``first`` to mono float at ``sample_rate`` (what
    ``av.AudioResampler`` builds, but single-threaded: its graph starts a pool of slice threads per clip)."""
    graph = av.filter.Graph()
    graph.threads = 1
    source = graph.add("abuffer", sample_rate=str(first.sample_rate), sample_fmt=first.format.name,
                       channel_layout=first.layout.name, time_base=str(first.time_base or f"1/{first.sample_rate}"))
    convert = graph.add("aformat", sample_rates=str(sample_rate), sample_fmts="flt", channel_layouts="mono")
    sink = graph.add("abuffersink")
    source.link_to(convert)
    convert.link_to(sink)
    graph.configure()
    return graph


def _drain(graph: av.filter.Graph) -> list[np.ndarray]:
    out = []
    while True:
        try:
            out.append(graph.pull().to_ndarray().reshape(-1))
        except (EOFError, BlockingIOError):
            return out
