"""Packing without Ray: quarantine of every fault, the finished directory, resume and re-plan."""

from __future__ import annotations

import csv

import fsspec
import pytest

from affectgpt.corpus import scan_csv
from affectgpt.packing import PackError, finish, pack_shard, plan_shards, prepare
from shards.loader import ShardLoader
from shards.schema import PackConfig
from shards.verify import verify
from tests.shards.faulty_corpus import make_faulty_corpus

CFG = PackConfig(frames=4, size=32, samples_per_shard=4, max_audio_seconds=2.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_faulty_corpus(tmp_path_factory.mktemp("corpus"), num=14)


def pack(corpus, out, cfg=CFG, split="coarse"):
    records, problems = scan_csv(corpus.root / "coarse.csv", corpus.root)
    plans = plan_shards(records, split, cfg)
    prepare(str(out), split, plans)
    results = [pack_shard(p, split, cfg, str(out)) for p in plans]
    return results, finish(str(out), split, cfg, results, problems, {"rows": len(records) + len(problems)})


def test_packs_good_samples_and_quarantines_each_fault(corpus, tmp_path):
    _, index = pack(corpus, tmp_path)
    with (tmp_path / "quarantine.csv").open(encoding="utf-8") as f:
        quarantine = {row["name"]: row["reason"] for row in csv.DictReader(f)}
    assert quarantine.keys() == corpus.quarantined.keys()
    for name, fragment in corpus.quarantined.items():
        assert fragment in quarantine[name], (name, quarantine[name])
    assert index.source["rows"] == index.samples + index.quarantined == 15
    assert index.no_audio == 1
    assert verify(str(tmp_path))[1] == []
    samples = [s for batch in ShardLoader(str(tmp_path), batch_size=4, resampled=False) for s in batch]
    assert {s["name"] for s in samples} == corpus.good and len(samples) == len(corpus.good)
    silent = [s for s in samples if s["name"] in corpus.no_audio]
    assert silent[0]["has_audio"] is False and silent[0]["audio"].size == 0
    loud = [s for s in samples if s["name"] not in corpus.no_audio]
    assert all(s["has_audio"] and 0 < s["audio"].size <= 32000 for s in loud)
    assert all(s["frames"].shape == (4, 32, 32, 3) for s in samples)


def test_resume_keeps_verified_shards_and_redoes_damaged_ones(corpus, tmp_path):
    first, index = pack(corpus, tmp_path)
    (tmp_path / first[1].file).write_bytes(b"half a shard")  # damaged after its marker was written
    (tmp_path / ".coarse-000002.tar.0123abcd.tmp").write_bytes(b"a killed writer's leftovers")
    second, again = pack(corpus, tmp_path)
    assert [r.reused for r in second] == [True, False, True]
    assert again == index  # byte-identical shards: same sha256 everywhere
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_new_plan_replaces_old_shards_and_another_split_is_refused(corpus, tmp_path):
    pack(corpus, tmp_path)
    _, index = pack(corpus, tmp_path, PackConfig(frames=4, size=32, samples_per_shard=6))
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == [s.file for s in index.shards]
    assert len(index.shards) == 2 and verify(str(tmp_path))[1] == []
    with pytest.raises(PackError, match="holds shards of split\\(s\\) coarse"):
        pack(corpus, tmp_path, split="fine")


def test_packs_to_an_fsspec_url(corpus):
    url = "memory://build-test/coarse"
    _, index = pack(corpus, url)
    again, _ = pack(corpus, url)
    assert all(r.reused for r in again) and verify(url)[1] == [] and index.samples == len(corpus.good)
    fsspec.filesystem("memory").rm("/build-test", recursive=True)


@pytest.mark.parametrize(("samples", "per_shard", "sizes"), [
    (72, 64, [36, 36]), (420, 64, [60] * 7), (90, 64, [45, 45]), (10, 4, [4, 3, 3]), (8, 4, [4, 4]),
    (3, 256, [3]), (0, 4, []),
])
def test_shards_are_as_few_as_hold_the_split_and_differ_by_at_most_one(samples, per_shard, sizes):
    assert PackConfig(samples_per_shard=per_shard).shard_sizes(samples) == sizes


def test_the_plan_deals_every_record_once_into_even_shards(corpus):
    records, _ = scan_csv(corpus.root / "coarse.csv", corpus.root)
    plans = plan_shards(records, "coarse", PackConfig(frames=4, size=32, samples_per_shard=4))
    assert [len(p.records) for p in plans] == PackConfig(samples_per_shard=4).shard_sizes(len(records))
    assert sorted(r.name for p in plans for r in p.records) == sorted(r.name for r in records)
