"""The pure parts of pre-labelling: config, stage failure handling, the resumable store and its outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affectgpt.atomic import is_temp, temp_path
from affectgpt.config import ConfigError, load_config
from affectgpt.corpus import Record, RowProblem
from affectgpt.prelabel.config import MERGE_INSTRUCTION, PrelabelConfig, StageConfig
from affectgpt.prelabel.stages import ChatStage, LabelStage, apply, new_row
from affectgpt.prelabel.store import SampleStore, StoreError, pending, write_outputs
from tests.prelabel.conftest import ROOT, read_csv


def records(n: int) -> list[Record]:
    return [Record(f"clip{i}", f"subtitle {i}", "", [], video=Path(f"/c/videos/clip{i}.mp4"), row=i + 2)
            for i in range(n)]


def test_config_resolves_relative_models_against_root_and_names_missing_ones(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    cfg = load_config(PrelabelConfig, None, ["visual.model=a", "acoustic.model=a", "merge.model=b"])
    resolved = cfg.resolve(tmp_path)
    assert resolved.visual.model == tmp_path / "a" and resolved.merge.model == tmp_path / "b"
    assert resolved.merge.instruction == MERGE_INSTRUCTION and resolved.translate.model is None
    with pytest.raises(ValueError, match=r"merge\.model: .*/nowhere does not exist"):
        load_config(PrelabelConfig, None, ["visual.model=a", "acoustic.model=a", "merge.model=nowhere"]).resolve(
            tmp_path)
    with pytest.raises(ConfigError, match=r"merge\.model is required"):
        load_config(PrelabelConfig, None, ["visual.model=a", "acoustic.model=a"])
    with pytest.raises(ConfigError, match=r"merge\.batchsize"):
        load_config(PrelabelConfig, ROOT / "configs" / "prelabel-tiny.yaml", ["merge.batchsize=2"])
    with pytest.raises(ConfigError, match="actors"):
        load_config(PrelabelConfig, ROOT / "configs" / "prelabel-tiny.yaml", ["visual.actors=0"])


class FakeLM:
    """Replies per prompt: raises for subtitles containing "boom", empty for "silence"."""

    def generate(self, conversations, max_new_tokens):
        texts = [c[-1]["content"] for c in conversations]
        if any("boom" in t for t in texts):
            raise RuntimeError("model exploded")
        return ["" if "silence" in t else "The person frowns. Therefore, the person feels anxious."
                for t in texts]


def test_a_sample_that_breaks_a_stage_fails_alone_with_its_reason():
    rows = [new_row(r) for r in records(5)]
    rows[1]["subtitle"] = "boom"
    rows[2]["subtitle"] = "silence"
    rows[3].update(error="undecodable", stage="decode")
    merge = ChatStage("merge", StageConfig(model=Path("unused"), instruction="Merge."), lm=FakeLM())
    apply(merge, rows)
    apply(LabelStage(require_labels=True), rows)
    assert [(r["stage"], r["error"]) for r in rows] == [
        ("", ""), ("merge", "RuntimeError: model exploded"), ("merge", "empty generation"),
        ("decode", "undecodable"), ("", "")]
    assert rows[0]["labels"] == "anxious" and rows[3]["description"] == ""
    assert rows[0]["seconds_merge"] > 0 and rows[3]["seconds_merge"] == 0.0


def test_labels_exclude_quoted_and_denied_emotions_and_an_emotionless_text_is_malformed():
    rows = [new_row(r) for r in records(3)]
    rows[0]["description"] = 'She says "I am so happy" but is not calm; she feels anxious.'
    rows[1]["description"] = "The person walks to the door."
    rows[2]["description"] = "The person walks to the door."
    apply(LabelStage(require_labels=True), rows[:2])
    apply(LabelStage(require_labels=False), rows[2:])
    assert rows[0]["labels"] == "anxious" and not rows[0]["error"]
    assert rows[1]["stage"] == "labels" and "names no emotion" in rows[1]["error"]
    assert rows[2]["labels"] == "" and not rows[2]["error"]


def finished(record: Record, error: str = "") -> dict:
    row = new_row(record)
    row.update(visual="v", acoustic="a", description=f"about {record.name}", labels="sad,angry")
    if error:
        row.update(error=error, stage="merge", description="", labels="")
    return row


def test_store_persists_whole_parts_and_resumes_only_with_the_same_settings(tmp_path):
    out = tmp_path / "out"
    store = SampleStore(out, {"config": {"a": 1}, "corpus": "/c"})
    recs = records(4)
    store.append([finished(recs[0]), finished(recs[1])])
    store.append([finished(recs[2], error="empty generation")])
    temp_path(store.parts / "part-9-000000.jsonl").write_text('{"name": "clip3"')  # a writer killed mid-part
    again = SampleStore(out, {"config": {"a": 1}, "corpus": "/c"})
    assert sorted(again.load()) == ["clip0", "clip1", "clip2"]
    assert [r.name for r in pending(recs, again.load())] == ["clip3"]
    assert [r.name for r in pending(recs, again.load(), retry_failed=True)] == ["clip2", "clip3"]
    again.append([finished(recs[2])])  # a retry that succeeds replaces the failure
    assert not again.load()["clip2"]["error"]
    assert not [p for p in again.parts.iterdir() if is_temp(p.name)]
    with pytest.raises(StoreError, match=r"config\.a differ"):
        SampleStore(out, {"config": {"a": 2}, "corpus": "/c"})


def test_outputs_are_in_csv_order_without_gaps_and_link_the_videos(tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    (corpus / "videos").mkdir(parents=True)
    recs = records(3)
    store = SampleStore(out, {})
    store.append([finished(recs[2]), finished(recs[1], error="empty generation"), finished(recs[0])])
    problems = [RowProblem("clip9", 9, "video /c/videos/clip9.mp4 does not exist")]
    outcome = write_outputs(out, corpus, recs, problems, store.load(), translate=False)
    assert [r["name"] for r in read_csv(out / "coarse.csv")] == ["clip0", "clip2"]
    assert read_csv(out / "coarse.csv")[0] == {"name": "clip0", "subtitle": "subtitle 0",
                                              "description": "about clip0", "labels": "sad,angry"}
    assert [(f["name"], f["stage"]) for f in read_csv(out / "failed.csv")] == [("clip1", "merge"), ("clip9", "input")]
    assert len(outcome.labelled) == 2 and len(outcome.failed) == 2
    assert (out / "videos").resolve() == (corpus / "videos").resolve()
    labels = [json.loads(line) for line in (out / "stages" / "labels.jsonl").read_text().splitlines()]
    assert labels == [{"name": "clip0", "labels": ["sad", "angry"]}, {"name": "clip2", "labels": ["sad", "angry"]}]
    with pytest.raises(StoreError, match="1 samples have no result"):
        write_outputs(out, corpus, records(4), [], store.load(), translate=False)


def test_shipped_configs_load_and_translation_reads_the_description():
    for name in ("prelabel.yaml", "prelabel-tiny.yaml"):
        cfg = load_config(PrelabelConfig, ROOT / "configs" / name)
        assert cfg.translate.model is None and cfg.decode.num_frames == 8
    row = new_row(records(1)[0])
    row["description"] = "She frowns."
    translate = ChatStage("translate", StageConfig(model=Path("unused"), instruction="Into Chinese:"), lm=FakeLM())
    assert translate.messages(row) == [{"role": "user", "content": "Into Chinese:\n\nShe frowns."}]
    apply(translate, [row])
    assert row["translation"].endswith("anxious.") and row["description"] == "She frowns."


def test_describers_prompt_one_modality_and_check_the_decode_settings(describer):
    import numpy as np

    from affectgpt.prelabel.config import DecodeConfig
    from affectgpt.prelabel.stages import NO_AUDIO, Describer

    decode = DecodeConfig(max_audio_seconds=4.0)
    acoustic = Describer("acoustic", StageConfig(model=describer, instruction="Voice?", max_new_tokens=4), decode,
                         ROOT)
    rows = [new_row(r) for r in records(2)]
    for row, seconds in zip(rows, (1.0, 0.0), strict=True):
        row.update(frames=np.zeros((8, 224, 224, 3), np.uint8), has_audio=seconds > 0,
                   audio=np.full(int(16000 * seconds), 0.1, np.float32))
    assert acoustic.sample(rows[0])["frames"].shape == (0, 224, 224, 3)  # video passed as missing
    apply(acoustic, rows)
    assert rows[0]["acoustic"] and rows[0]["acoustic"] != NO_AUDIO and not rows[0]["error"]
    assert rows[1]["acoustic"] == NO_AUDIO
    with pytest.raises(ValueError, match="num_frames"):
        Describer("visual", StageConfig(model=describer, instruction="Face?"), DecodeConfig(num_frames=4,
                  max_audio_seconds=4.0), ROOT)
