import shutil

import pytest

from affectgpt.corpus import CorpusError, read_csv, read_split, scan_csv


def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_reads_real_emer_fine_release(emer_fine_csv):
    records = read_csv(emer_fine_csv)
    assert len(records) == 332
    assert records[0].name == "sample_00000000"
    assert sum("In the video" in r.description for r in records) > 300
    assert len({r.name for r in records}) == 332


def test_reads_a_corpus_with_videos(synth_corpus):
    records = read_split(synth_corpus, "fine")
    assert all(r.video is not None and r.video.exists() for r in records)
    assert all(r.labels for r in records)


def test_missing_column_names_file_and_row(tmp_path):
    path = write(tmp_path / "bad.csv", "name,description,labels\nsample_1,hi,happy\n")
    with pytest.raises(CorpusError, match=r"bad\.csv, row 1: .*lacks column\(s\) \['subtitle'\]"):
        read_csv(path)


def test_unlabelled_collection_has_empty_targets(tmp_path):
    (record,) = read_csv(write(tmp_path / "raw.csv", "name,subtitle\nclip_1,Where were you?\n"))
    assert (record.name, record.subtitle, record.description, record.labels) == ("clip_1", "Where were you?", "", [])


def test_short_row_and_empty_cells_are_reported_per_row(tmp_path):
    text = (
        "name,subtitle,description,labels\n"
        "a,hello,desc,happy\n"
        "b,hello\n"
        "c,,desc,sad\n"
        "a,again,desc,\n"
    )
    records, problems = scan_csv(write(tmp_path / "c.csv", text))
    assert [r.name for r in records] == ["a"]
    assert [(p.name, p.row) for p in problems] == [("b", 3), ("c", 4), ("a", 5)]
    assert "missing column 'description'" in problems[0].reason
    assert "empty 'subtitle'" in problems[1].reason
    assert "duplicate" in problems[2].reason
    with pytest.raises(CorpusError, match=r"c\.csv, row 3 \(b\).*and 2 more bad rows"):
        read_csv(tmp_path / "c.csv")


def test_non_utf8_cell_is_named(tmp_path):
    text = b"name,chinese,english\nx,\xe4\xbd\xa0,In the video\ny,\xff\xfe,In the video\n"
    path = write(tmp_path / "latin.csv", text)
    records, problems = scan_csv(path)
    assert [r.name for r in records] == ["x"]
    assert problems[0].row == 3 and "column 'chinese' is not valid UTF-8" in problems[0].reason


def test_missing_video_is_a_row_problem(synth_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(synth_corpus, corpus)
    victim = read_split(corpus, "test")[0]
    victim.video.unlink()
    with pytest.raises(CorpusError, match=rf"test\.csv, row {victim.row} \({victim.name}\): video .* does not exist"):
        read_split(corpus, "test")


def test_unknown_split_lists_available(synth_corpus):
    with pytest.raises(CorpusError, match="splits in .*: coarse, fine, test"):
        read_split(synth_corpus, "train")
