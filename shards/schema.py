"""The shard sample format, version 3 (v1 stored one JPEG per frame, v2 had no digests): one clip in a
WebDataset tar.

A sample is a group of tar members sharing the key ``tar_key(name)``:

  <key>.json         {"name", "subtitle", "description", "labels", "split", "has_audio", "source": {...}}
  <key>.frames.jpg   the T frames (T = ``frames`` of the pack config) stacked top to bottom into one RGB JPEG
                     filmstrip of ``size`` x (T * ``size``) pixels
  <key>.audio.npy    int16 PCM, mono, ``sample_rate`` Hz, at most ``max_audio_seconds``; length 0 when the
                     source has no audio track (``has_audio`` false)
  <key>.xxh3         {"audio.npy": hex, "frames.jpg": hex, "json": hex}: the xxh3_64 digest of each member as the
                     pack job wrote it

Digests: ``decode_sample`` checks them before it decodes anything, so a flipped bit in a shard (which JPEG and
npy decoders mostly accept silently) or a sample cut short by truncation raises ``CorruptSampleError`` naming
the shard and key, at the point of use; ``shards verify`` checks the same digests. xxh3_64 rather than crc32 or
blake2b (``benchmarks/shard_digests.py`` measures all three on real samples): ~10 us per 190 KB sample, 0.1 % of
its decode time, where zlib's crc32 takes 3 % and blake2b 8 %; a 64-bit digest per member is ample against
accidental damage (it is no defence against a forger, who would rewrite the digest too). The index's
per-shard sha256 stays for whole-file checks.

One filmstrip rather than T images: one decoder call and three tar members per clip instead of T + 2, which
made the loader ~30% faster per sample. ``size`` must be a multiple of 16 so that no JPEG block (16x16 with
chroma subsampling) straddles two frames: each frame decodes exactly as it would alone.

Why JPEG frames rather than raw arrays (measured by ``benchmarks/loader_throughput.py`` on the synthetic corpus,
8 frames of 224x224): raw uint8 frames take ~1.2 MB per clip, 14x the JPEG filmstrip (~86 KB at quality 90)
and ~10x the source mp4; for EMER-Coarse's ~115k clips that is ~140 GB instead of ~10 GB to store, copy and
read every epoch. Decoding the filmstrip costs ~2 ms of CPU per clip (raw: ~0.1 ms), small next to decoding
the mp4 again (~21 ms). Audio stays lossless int16 (half of float32; the model wants the waveform, not a
codec's approximation of it).

Decoding is safe for shards from anywhere: JSON, JPEG (libjpeg-turbo through simplejpeg, after its header
says the expected size) and ``.npy`` with ``allow_pickle=False``; nothing is unpickled, and a member this
schema does not define is an error. simplejpeg decodes (its pixels are identical to Pillow's: both are
libjpeg-turbo with default settings); Pillow still encodes.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
import simplejpeg
import xxhash
from PIL import Image

SCHEMA_VERSION = 3
AUDIO_SCALE = 32767.0



class SchemaError(ValueError):
    """A shard sample that does not match the schema; the message names shard and key."""


class CorruptSampleError(SchemaError):
    """A sample whose bytes are not those the pack job wrote (digest mismatch, or members lost to truncation)."""


@dataclass(frozen=True)
class PackConfig:
    """What a pack job produces; recorded in ``index.json`` so the loader knows the shapes to expect.

    frames: frames per clip
    size: frame side in pixels (a multiple of 16)
    sample_rate: audio rate in Hz
    max_audio_seconds: audio kept per clip
    jpeg_quality: frame JPEG quality
    samples_per_shard: the most samples in one shard; a split is dealt evenly over as few shards as hold it
        (``shard_sizes``), so no small last shard is read far more often than the rest
    seed: the shuffle that deals samples into shards (so every shard mixes the corpus)
    """

    frames: int = 8
    size: int = 224
    sample_rate: int = 16000
    max_audio_seconds: float = 10.0
    jpeg_quality: int = 90
    samples_per_shard: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.frames < 1 or self.size < 16 or self.size % 16:
            raise ValueError(f"frames must be >= 1 and size a multiple of 16, got frames={self.frames} "
                             f"size={self.size}")
        if self.frames * self.size > 65500:
            raise ValueError(f"frames x size = {self.frames * self.size} exceeds the JPEG limit of 65500 pixels")
        if self.sample_rate < 1000 or self.max_audio_seconds <= 0:
            raise ValueError("sample_rate must be >= 1000 and max_audio_seconds > 0")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {self.samples_per_shard}")

    def shard_sizes(self, samples: int) -> list[int]:
        return shard_sizes(samples, self.samples_per_shard)

    @property
    def max_audio_samples(self) -> int:
        return int(self.max_audio_seconds * self.sample_rate)


def shard_sizes(samples: int, samples_per_shard: int) -> list[int]:
    """Samples per shard for a split of ``samples``: ceil(samples / samples_per_shard) shards whose sizes differ
    by at most one. Readers are dealt whole shards and a resampled epoch tops up the short ones, so a 64 + 8
    layout over 2 ranks reads the small shard's clips 2.5 times as often as the others."""
    shards = -(-samples // samples_per_shard)
    base, extra = divmod(samples, shards) if shards else (0, 0)
    return [base + (i < extra) for i in range(shards)]


def tar_key(name: str) -> str:
    """The tar key of a sample name. WebDataset splits member names at the first dot, so dots (and slashes)
    in names are percent-encoded; the real name is kept in the JSON record."""
    return quote(name, safe="").replace(".", "%2E")


DIGESTS = "xxh3"  # the member holding the other members' digests
MEMBERS = frozenset({"json", "frames.jpg", "audio.npy", DIGESTS})


def member_digests(members: dict[str, bytes]) -> bytes:
    """The ``xxh3`` member for ``members`` (every member but itself)."""
    return json.dumps(_digests(members), sort_keys=True).encode("ascii")


def _digests(members: dict[str, bytes]) -> dict[str, str]:
    return {suffix: xxhash.xxh3_64_hexdigest(data) for suffix, data in members.items() if suffix != DIGESTS}


def check_sample(members: dict[str, bytes], where: str) -> None:
    """Raise unless ``members`` are exactly the schema's and each matches its stored digest: SchemaError for
    members the schema does not define, CorruptSampleError for missing members or a digest mismatch."""
    unexpected = set(members) - MEMBERS
    if unexpected:
        raise SchemaError(f"{where}: members do not match schema v{SCHEMA_VERSION} (unexpected "
                          f"{sorted(unexpected)}; a shard of another format?)")
    missing = MEMBERS - set(members)
    if missing:
        raise CorruptSampleError(f"{where}: members {sorted(missing)} missing (truncated or damaged shard)")
    try:
        stored = json.loads(members[DIGESTS])
    except ValueError as e:
        raise CorruptSampleError(f"{where}: unreadable {DIGESTS} member ({e})") from e
    actual = _digests(members)
    if stored != actual:
        bad = sorted(k for k in actual if stored.get(k) != actual[k]) if isinstance(stored, dict) else [DIGESTS]
        raise CorruptSampleError(f"{where}: {', '.join(bad)} differ(s) from the digest the pack job wrote "
                                 "(corrupt shard)")


def encode_sample(
    record: dict[str, Any], frames: np.ndarray, audio: np.ndarray | None, cfg: PackConfig
) -> dict[str, bytes]:
    """One clip -> tar members (suffix -> bytes). ``record`` holds the JSON fields except ``has_audio``;
    ``audio`` is float32 in [-1, 1] or None for a clip without an audio track."""
    if frames.shape != (cfg.frames, cfg.size, cfg.size, 3) or frames.dtype != np.uint8:
        raise SchemaError(f"{record.get('name')}: frames {frames.dtype}{list(frames.shape)} do not match "
                          f"uint8[{cfg.frames}, {cfg.size}, {cfg.size}, 3]")
    members = {"json": json.dumps({**record, "has_audio": audio is not None}, ensure_ascii=False,
                                  sort_keys=True).encode("utf-8")}
    buf = io.BytesIO()
    Image.fromarray(frames.reshape(-1, cfg.size, 3)).save(buf, format="JPEG", quality=cfg.jpeg_quality)
    members["frames.jpg"] = buf.getvalue()
    pcm = np.zeros(0, np.int16) if audio is None else audio[: cfg.max_audio_samples]
    pcm = np.round(np.clip(pcm, -1.0, 1.0) * AUDIO_SCALE).astype("<i2")
    buf = io.BytesIO()
    np.save(buf, pcm, allow_pickle=False)
    members["audio.npy"] = buf.getvalue()
    members[DIGESTS] = member_digests(members)
    return members


def decode_sample(members: dict[str, bytes], cfg: PackConfig, where: str) -> dict[str, Any]:
    """Tar members of one sample -> the Sample dict of docs/CONTRACTS.md, after ``check_sample``. ``where``
    (shard and key) goes into every error message."""
    check_sample(members, where)
    try:
        record = json.loads(members["json"].decode("utf-8"))
        frames = _decode_filmstrip(members["frames.jpg"], cfg)
        pcm = _load_pcm(members["audio.npy"])
    except (ValueError, OSError) as e:
        raise SchemaError(f"{where}: undecodable member ({type(e).__name__}: {e})") from e
    if pcm.dtype != np.dtype("<i2") or pcm.ndim != 1 or pcm.size > cfg.max_audio_samples:
        raise SchemaError(f"{where}: audio.npy is {pcm.dtype}{list(pcm.shape)}, expected int16[<= "
                          f"{cfg.max_audio_samples}]")
    audio = np.divide(pcm, np.float32(AUDIO_SCALE), dtype=np.float32)
    try:
        return {
            "name": str(record["name"]),
            "frames": frames,
            "audio": audio,
            "has_audio": bool(record["has_audio"]),
            "subtitle": str(record["subtitle"]),
            "description": str(record["description"]),
            "labels": [str(w) for w in record["labels"]],
            "split": str(record["split"]),
        }
    except (KeyError, TypeError) as e:
        raise SchemaError(f"{where}: json record lacks or mistypes {e}") from e


# The header np.save writes for the pack job's audio (1-D little-endian int16, format 1.0, padded to 64 bytes).
_PCM_HEADER = re.compile(rb"\x93NUMPY\x01\x00(..)\{'descr': '<i2', 'fortran_order': False, 'shape': \((\d+),\), \} *\n",
                         re.DOTALL)


def _load_pcm(data: bytes) -> np.ndarray:
    """``audio.npy`` -> int16 samples. The pack job's own header is read by this pattern and the samples are
    viewed in place (np.load's header parsing was a third of a sample's decode); any other .npy goes through
    np.load, with its checks and errors."""
    header = _PCM_HEADER.match(data)
    if header is not None:
        start, count = header.end(), int(header[2])
        if start == 10 + int.from_bytes(header[1], "little") and len(data) == start + 2 * count:
            return np.frombuffer(data, "<i2", count, start)
    return np.load(io.BytesIO(data), allow_pickle=False)


def _decode_filmstrip(data: bytes, cfg: PackConfig) -> np.ndarray:
    height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    if (width, height) != (cfg.size, cfg.frames * cfg.size) or colorspace not in ("YCbCr", "RGB"):
        raise ValueError(f"frames.jpg is {colorspace} {width}x{height}, expected colour {cfg.size}x"
                         f"{cfg.frames * cfg.size}")
    return simplejpeg.decode_jpeg(data, "RGB").reshape(cfg.frames, cfg.size, cfg.size, 3)
