"""Schema, writer, index and verify, without Ray and without video decoding."""

from __future__ import annotations

import io
import json

import fsspec
import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from shards.index import INDEX_FILE, ShardIndexError, read_index
from shards.schema import (
    DIGESTS,
    CorruptSampleError,
    SchemaError,
    _load_pcm,
    decode_sample,
    encode_sample,
    member_digests,
    tar_key,
)
from shards.verify import verify
from shards.writer import ShardWriter
from tests.shards.conftest import TINY, tiny_sample

CONTRACT_KEYS = {"name", "frames", "audio", "has_audio", "subtitle", "description", "labels", "split"}


def resealed(members: dict[str, bytes]) -> dict[str, bytes]:
    """``members`` with digests that match them: what a buggy or hostile writer produces, for decoder tests."""
    return {**members, DIGESTS: member_digests(members)}


def test_sample_round_trip_has_the_contract_shape():
    record, frames, audio = tiny_sample(7)
    sample = decode_sample(encode_sample(record, frames, audio, TINY), TINY, "test")
    assert set(sample) == CONTRACT_KEYS
    assert sample["frames"].dtype == np.uint8 and sample["frames"].shape == (2, 16, 16, 3)
    assert np.abs(sample["frames"].astype(int) - 70).max() <= 2  # JPEG of a flat image is near-exact
    assert sample["audio"].dtype == np.float32
    np.testing.assert_allclose(sample["audio"], audio, atol=1e-4)
    assert sample["has_audio"] is True
    assert (sample["name"], sample["labels"], sample["split"]) == ("s0007", ["happy"], "coarse")


def test_clip_without_audio_track_keeps_the_sample_with_empty_audio():
    record, frames, _ = tiny_sample(1)
    sample = decode_sample(encode_sample(record, frames, None, TINY), TINY, "test")
    assert sample["has_audio"] is False and sample["audio"].shape == (0,)


def test_audio_is_cut_to_the_configured_maximum():
    record, frames, _ = tiny_sample(1)
    long = np.full(TINY.max_audio_samples * 3, 0.25, np.float32)
    sample = decode_sample(encode_sample(record, frames, long, TINY), TINY, "test")
    assert sample["audio"].shape == (TINY.max_audio_samples,)


def test_decoder_refuses_members_outside_the_schema():
    record, frames, audio = tiny_sample(1)
    members = encode_sample(record, frames, audio, TINY)
    members["pyd"] = b"\x80\x04K\x01."  # a pickle: must never be loaded
    with pytest.raises(SchemaError, match=r"shard-x:key.*unexpected \['pyd'\]"):
        decode_sample(members, TINY, "shard-x:key")


def test_decoder_refuses_a_pickled_npy():
    record, frames, audio = tiny_sample(1)
    members = encode_sample(record, frames, audio, TINY)
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    members["audio.npy"] = buf.getvalue()
    with pytest.raises(SchemaError, match="where:.*undecodable"):
        decode_sample(resealed(members), TINY, "where")


def test_filmstrip_pixels_are_those_pillow_decodes():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (TINY.frames, TINY.size, TINY.size, 3), dtype=np.uint8)
    members = encode_sample(tiny_sample(1)[0], frames, None, TINY)
    pillow = np.asarray(Image.open(io.BytesIO(members["frames.jpg"]))).reshape(frames.shape)
    assert np.array_equal(decode_sample(members, TINY, "test")["frames"], pillow)


@pytest.mark.parametrize("image,problem", [
    (Image.new("RGB", (16, 48)), r"YCbCr 16x48, expected colour 16x32"),
    (Image.new("L", (16, 32)), r"Gray 16x32, expected colour 16x32"),
])
def test_decoder_refuses_a_filmstrip_of_another_size_or_colour(image, problem):
    members = encode_sample(*tiny_sample(1), TINY)
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    members["frames.jpg"] = buf.getvalue()
    with pytest.raises(SchemaError, match=f"shard-x:key: undecodable member .*{problem}"):
        decode_sample(resealed(members), TINY, "shard-x:key")


def test_decoder_refuses_a_truncated_filmstrip():
    members = encode_sample(*tiny_sample(1), TINY)
    members["frames.jpg"] = members["frames.jpg"][: len(members["frames.jpg"]) // 2]
    with pytest.raises(SchemaError, match="shard-x:key: undecodable member"):
        decode_sample(resealed(members), TINY, "shard-x:key")


@pytest.mark.parametrize("member", ["frames.jpg", "audio.npy", "json"])
def test_a_flipped_byte_in_any_member_is_caught_by_its_digest(member):
    members = encode_sample(*tiny_sample(1), TINY)
    data = bytearray(members[member])
    data[len(data) // 2] ^= 0x01  # one bit: the JPEG and npy decoders accept it and return other values
    members[member] = bytes(data)
    with pytest.raises(CorruptSampleError, match=f"shard-x:key: {member} differ"):
        decode_sample(members, TINY, "shard-x:key")


def test_a_sample_missing_members_is_corrupt():
    members = encode_sample(*tiny_sample(1), TINY)
    del members["audio.npy"]
    with pytest.raises(CorruptSampleError, match=r"shard-x:key: members \['audio.npy'\] missing"):
        decode_sample(members, TINY, "shard-x:key")


def test_tar_keys_have_no_dots_or_slashes():
    assert tar_key("sample_00000042") == "sample_00000042"
    assert "." not in tar_key("clip.v2/a b") and "/" not in tar_key("clip.v2/a b")


def test_writer_is_atomic_and_reproducible(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(str(tmp_path), "coarse-000000.tar") as w:
            record, frames, audio = tiny_sample(0)
            w.add("s0000", encode_sample(record, frames, audio, TINY))
            raise RuntimeError("killed mid-shard")
    assert list(tmp_path.iterdir()) == []  # neither the final name nor a temporary file
    infos = []
    for name in ("a.tar", "b.tar"):
        with ShardWriter(str(tmp_path), name) as w:
            for i in range(3):
                record, frames, audio = tiny_sample(i)
                w.add(tar_key(record["name"]), encode_sample(record, frames, audio, TINY))
        infos.append(w.info)
    assert infos[0].sha256 == infos[1].sha256 and infos[0].samples == 3
    assert infos[0].bytes == (tmp_path / "a.tar").stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "b.tar"]


def test_shards_are_plain_webdataset(tmp_path, make_shards):
    make_shards(tmp_path, [3])
    samples = list(wds.WebDataset(str(tmp_path / "coarse-000000.tar"), shardshuffle=False))
    assert [s["__key__"] for s in samples] == ["s0000", "s0001", "s0002"]
    assert json.loads(samples[1]["json"])["name"] == "s0001"


def test_fsspec_url_round_trip(make_shards):
    url = "memory://shards-test/coarse"
    index = make_shards(url, [2, 1])
    assert read_index(url).shards == index.shards
    assert verify(url)[1] == []
    fsspec.filesystem("memory").rm("/shards-test", recursive=True)


def test_index_round_trip_and_errors(tmp_path, make_shards):
    index = make_shards(tmp_path, [4, 2])
    again = read_index(str(tmp_path))
    assert again == index and again.samples == 6 and again.no_audio == 2
    data = json.loads((tmp_path / INDEX_FILE).read_text())
    data["schema_version"] = 99
    (tmp_path / INDEX_FILE).write_text(json.dumps(data))
    with pytest.raises(ShardIndexError, match="schema_version 99"):
        read_index(str(tmp_path))
    data["schema_version"] = 2  # before per-sample digests: refused, with what to do
    (tmp_path / INDEX_FILE).write_text(json.dumps(data))
    with pytest.raises(ShardIndexError, match="schema_version 2 is not supported .* repack"):
        read_index(str(tmp_path))
    (tmp_path / INDEX_FILE).unlink()
    with pytest.raises(ShardIndexError, match="no index.json"):
        read_index(str(tmp_path))


@pytest.mark.parametrize("workers", [1, 3])
def test_verify_passes_then_names_the_damaged_shard(tmp_path, make_shards, workers):
    make_shards(tmp_path, [4, 4, 2])
    assert verify(str(tmp_path), workers=workers)[1] == []
    shard = tmp_path / "coarse-000001.tar"
    data = bytearray(shard.read_bytes())
    data[2000] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = verify(str(tmp_path), workers=workers)[1]
    assert len(problems) == 2 and problems[0].startswith("coarse-000001.tar: sha256")
    assert problems[1].startswith("coarse-000001.tar:s0004: frames.jpg differ")  # the sample, by its digest
    (tmp_path / "coarse-000002.tar").unlink()
    seen = []
    problems = verify(str(tmp_path), progress=lambda s: seen.append(s.file), workers=workers)[1]
    assert problems[2] == "coarse-000002.tar: missing"  # in index order, whatever finished first
    assert seen == [f"coarse-00000{i}.tar" for i in range(3)]


def test_verify_catches_a_count_mismatch(tmp_path, make_shards):
    make_shards(tmp_path, [4])
    data = json.loads((tmp_path / INDEX_FILE).read_text())
    data["shards"][0]["samples"] = 5
    data["totals"]["samples"] = 5
    (tmp_path / INDEX_FILE).write_text(json.dumps(data))
    assert verify(str(tmp_path))[1] == ["coarse-000000.tar: 4 samples, index says 5"]


@pytest.mark.parametrize("array", [np.zeros(0, "<i2"), np.arange(-5, 5, dtype="<i2"), np.full(70000, 7, "<i2"),
                                   np.arange(6, dtype=">i2"), np.arange(6, dtype="<i4"), np.zeros((2, 3), "<i2")])
def test_audio_member_reads_as_np_load_reads_it(array):
    """The pack job's header is read without np.load; other arrays still go through it (and the dtype and shape
    checks refuse them); a member cut short is undecodable either way."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    data = buf.getvalue()
    got = _load_pcm(data)
    assert got.dtype == array.dtype and np.array_equal(got, array)
    packed = array.dtype == np.dtype("<i2") and array.ndim == 1
    assert got.flags.writeable is not packed  # the pack job's arrays are viewed in place, not copied by np.load
    with pytest.raises(ValueError):
        _load_pcm(data[:-1] if array.size else data[:-10])
