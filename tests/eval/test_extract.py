"""The lexicon extractor: word forms, negation and concealment scope, attribution, multi-label, coverage."""

from __future__ import annotations

import csv
import json

import pytest

from affectgpt.cli import main
from affectgpt.eval.extract import LexiconExtractor, from_labels
from affectgpt.eval.lexicon import Lexicon, LexiconError, default_lexicon, lemma_candidates
from affectgpt.synth.emotions import VOCABULARY


@pytest.fixture(scope="module")
def x() -> LexiconExtractor:
    return LexiconExtractor()


def labels(x: LexiconExtractor, text: str) -> list[str]:
    return x.extract(text).labels


@pytest.mark.parametrize("form", ["angry", "angrily", "anger", "angered", "angrier", "Anger"])
def test_word_forms_map_to_one_label(x, form):
    assert labels(x, f"He speaks {form}.") == ["angry"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Her nervousness shows.", ["nervous"]),
        ("She worries about the results.", ["worried"]),
        ("He answers sarcastically.", ["sarcastic"]),
        ("She is ill at ease.", ["uneasy"]),  # the longest form wins over "at ease" (calm)
        ("She is at ease.", ["calm"]),
        ("He is fed up with it.", ["frustrated"]),
        ("a light-hearted remark, said cheerfully", ["lighthearted", "cheerful"]),
    ],
)
def test_derivations_and_multiword_forms(x, text, expected):
    assert labels(x, text) == expected


def test_stimulus_ing_adjectives_and_stop_forms_are_not_emotions(x):
    assert labels(x, "The news is surprising and annoying, hopefully brief; the subtitle content is plain.") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She is not happy.", []),
        ("She isn't happy, but sad.", ["sad"]),
        ("There is no sign of fear.", []),
        ("without any obvious signs of nervousness or unease. She looks calm.", ["calm"]),
        ("He is sad rather than angry.", ["sad"]),
        ("a less optimistic attitude", []),
        ("He is no longer angry; he is relieved.", ["relieved"]),
        ("She is not only happy but also excited.", ["happy", "excited"]),
        ("She is a little nervous.", ["nervous"]),
    ],
)
def test_negation_scope(x, text, expected):
    assert labels(x, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("He tries to hide his anxiety.", ["anxious"]),
        ("He cannot hide his joy.", ["joyful"]),  # the negation is of the hiding, not of the joy
        ("She pretends to be calm while hiding her anxiety.", ["anxious"]),
        ("His smile is forced and his cheerfulness feigned; he is sad.", ["sad"]),
    ],
)
def test_concealment_keeps_and_pretence_drops(x, text, expected):
    assert labels(x, text) == expected


def test_hedged_emotions_are_kept(x):
    text = "This may indicate that he is possibly frustrated, with a hint of teasing."
    assert labels(x, text) == ["frustrated", "teasing"]


def test_quoted_subtitle_is_not_the_persons(x):
    text = 'In the text, the subtitle says: "I am so happy, I love you!" \u201cGreat joy!\u201d She looks anxious.'
    assert labels(x, text) == ["anxious"]
    statuses = {m.label: m.status for m in x.mentions(text)}
    assert statuses["happy"] == "quoted" and statuses["joyful"] == "quoted"


def test_negation_inside_a_quote_does_not_leak_out(x):
    assert labels(x, 'She says "No!" Angry, she leaves.') == ["angry"]


def test_things_and_body_parts_are_not_the_person(x):
    text = "They discuss a serious issue in a tense or serious atmosphere; the mouth is tense. He is serious."
    assert labels(x, text) == ["serious"]
    assert [m.status for m in x.mentions(text)] == ["not_person"] * 4 + ["person"]


def test_multi_label_order_and_groups(x):
    text = (
        "In the video, he frowns angrily. In the audio, his voice trembles with fear and anxiety. "
        "Therefore, the emotional state of the person is angry, scared and anxious."
    )
    result = x.extract(text)
    assert result.labels == ["angry", "fearful", "anxious", "scared"]
    assert result.groups == ["angry", "fearful"]


def test_synthetic_vocabulary_is_in_the_lexicon():
    lexicon = default_lexicon()
    missing = [w for words in VOCABULARY.values() for w in words if not lexicon.is_known(lexicon.normalise(w).label)]
    assert missing == []
    # and each base emotion's words share one level-1 group
    for base, words in VOCABULARY.items():
        assert len({lexicon.normalise(w).level1 for w in words}) == 1, base


def test_from_labels_normalises_and_keeps_unknown_words():
    result = from_labels(["Anxiety", " worried", "zorbish", ""])
    assert result.labels == ["anxious", "worried", "zorbish"]
    assert result.groups == ["fearful", "zorbish"]


def test_lemmatiser_proposes_regular_derivations_only():
    assert lemma_candidates("happily")[:2] == ["happily", "happy"]
    assert "worry" in lemma_candidates("worries")


def test_bad_lexicon_file_names_the_line(tmp_path):
    path = tmp_path / "lex.tsv"
    path.write_text("# comment\nhappy\tjoyful\thappy\tpositive\tglad\nglad-ish\tjoyful\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=r"lex.tsv, line 3"):
        Lexicon.load(path)
    path.write_text("happy\tjoyful\thappy\tpositive\tglad\nsad\tsad\tsad\tnegative\tglad\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=r"line 2: form 'glad' already maps"):
        Lexicon.load(path)
    path.write_text("happy\tjoyful\thappy\tglad\n", encoding="utf-8")  # the valence column is missing
    with pytest.raises(LexiconError, match=r"line 1: valence 'glad' of 'happy' is not one of"):
        Lexicon.load(path)


def test_emer_fine_coverage(x, emer_fine_csv):
    with emer_fine_csv.open(encoding="utf-8") as f:
        texts = [row["english"] for row in csv.DictReader(f)]
    results = x.extract_many(texts)
    coverage = sum(bool(r.labels) for r in results) / len(results)
    print(f"EMER-Fine: {len(results)} rows, {coverage:.1%} with >= 1 label")
    assert len(results) == 332
    assert coverage >= 0.95


def test_labels_cli_text_and_csv(tmp_path, capsys):
    assert main(["labels", "--text", "She is not angry, just tired.", "--text", "Joyfully, he laughs."]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [{"labels": ["tired"], "groups": ["bad"]}, {"labels": ["joyful"], "groups": ["happy"]}]

    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text('name,english\na,"He is furious."\nb,"Nothing here."\n', encoding="utf-8")
    assert main(["labels", "--csv", str(src), "--out", str(out)]) == 0  # finds the 'english' column itself
    with out.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["name"], r["labels"], r["groups"]) for r in rows] == [("a", "furious", "angry"), ("b", "", "")]


def test_labels_cli_names_a_missing_column(tmp_path, caplog):
    src = tmp_path / "in.csv"
    src.write_text("name,text\na,happy\n", encoding="utf-8")
    assert main(["labels", "--csv", str(src), "--column", "english"]) == 2
    assert "no 'english' column" in caplog.text
    src.write_text("name,labels\na,happy\n", encoding="utf-8")
    assert main(["labels", "--csv", str(src)]) == 2
    assert "in.csv: no descriptions to read" in caplog.text
