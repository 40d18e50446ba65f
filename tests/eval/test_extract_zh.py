"""The lexicon extractor on Chinese: word forms on the shared wheel, negation scope, hedges, attribution, quotes,
language detection (also row by row in a mixed file), and agreement with the English labels on EMER-Fine."""

from __future__ import annotations

import csv
import json

import pytest

from affectgpt.cli import build_parser, main
from affectgpt.eval.extract import LexiconExtractor
from affectgpt.eval.languages import detect
from affectgpt.eval.lexicon import Lexicon, LexiconError, default_lexicon
from affectgpt.eval.llm_extract import ExtractorConfig, build_extractor
from affectgpt.eval.metrics import emer_metrics


@pytest.fixture(scope="module")
def x() -> LexiconExtractor:
    return LexiconExtractor()


def labels(x: LexiconExtractor, text: str) -> list[str]:
    return x.extract(text).labels


@pytest.mark.parametrize(
    ("words", "label"),
    [
        ("生气 愤怒 恼火 气愤", "angry"),
        ("高兴 开心 愉快 快乐", "happy"),
        ("伤心 难过 悲伤", "sad"),
    ],
)
def test_synonyms_map_to_one_label(x, words, label):
    for word in words.split():
        assert labels(x, f"他显得很{word}。") == [label], word


def test_forms_land_on_the_english_wheel(x):
    # 担心/焦虑/不安 are three English labels (worried, anxious, uneasy) of one level-2 group
    lexicon = default_lexicon()
    found = [labels(x, f"她有些{w}。") for w in ("担心", "焦虑", "不安")]
    assert found == [["worried"], ["anxious"], ["uneasy"]]
    assert {lexicon.labels[w[0]].level2 for w in found} == {"anxious"}
    assert {lexicon.normalise(w).label for w in ("焦虑", "anxiety", "Anxious")} == {"anxious"}


def test_every_chinese_form_names_a_wheel_label():
    lexicon = default_lexicon()
    chinese = [entry for key, entry in lexicon.forms.items() if len(key[0]) == 1 and "\u4e00" <= key[0] <= "\u9fff"]
    assert len(chinese) > 300
    assert all(entry is None or lexicon.is_known(entry.label) for entry in chinese)


def test_longest_form_wins_over_a_negator_inside_it(x):
    # 不安 / 不满 / 不耐烦 start with the negator 不; 心花怒放 (elated) contains 怒
    assert labels(x, "他有些不安，又带着不满和不耐烦。") == ["uneasy", "dissatisfied", "impatient"]
    assert labels(x, "她心花怒放。") == ["elated"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("她并不生气。", []),
        ("他没有表现出明显的紧张或不安，显得很平静。", ["calm"]),  # one scope over 或, ended by ，
        ("她没有紧张、不安。", []),  # the enumeration comma 、 does not end the scope
        ("他毫无惧色，也毫无恐惧。", []),
        ("这并非愤怒；而是失望。", ["disappointed"]),
        ("他并不愤怒，但是很失望！", ["disappointed"]),
        ("她悲伤而非愤怒。", ["sad"]),
        ("他不太乐观？他很担心。", ["worried"]),
        ("他不断地抱怨，不停地叹气。", ["complaining"]),  # 不断, 不停 do not negate
        ("他忍不住笑了，显得很开心。", ["happy"]),
    ],
)
def test_negation_scope(x, text, expected):
    assert labels(x, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("他似乎有些紧张。", ["tense"]),
        ("这可能表明她感到焦虑。", ["anxious"]),
        ("语气中带着一丝调侃，有些不满。", ["teasing", "dissatisfied"]),
    ],
)
def test_hedged_emotions_are_kept(x, text, expected):
    assert labels(x, text) == expected


def test_concealment_keeps_and_pretence_drops(x):
    assert labels(x, "他无法掩饰内心的喜悦。") == ["joyful"]
    assert labels(x, "她假装很轻松，却掩饰不住内心的焦虑。") == ["anxious"]
    assert labels(x, "他故作镇定。") == []
    assert labels(x, "她勉强露出开心的笑容，其实很失望。") == ["disappointed"]  # 勉强: forced, as English "forced"


def test_things_and_body_parts_are_not_the_person(x):
    text = "他们在讨论一个严肃的问题，气氛显得有些紧张，嘴角紧绷。他也很严肃。"
    assert labels(x, text) == ["serious"]
    assert [m.status for m in x.mentions(text)] == ["not_person"] * 3 + ["person"]
    assert labels(x, "他的表情很紧张，语气很严肃。") == ["tense", "serious"]  # expression and tone are the person's


def test_quoted_subtitle_is_not_the_persons(x):
    text = "在文本中，字幕内容：“我太高兴了，不生气！”「真开心」她看起来很难过。"
    assert labels(x, text) == ["sad"]
    assert {m.label: m.status for m in x.mentions(text)}["happy"] == "quoted"
    assert labels(x, "字幕：“不！”愤怒的她离开了。") == ["angry"]  # a negation inside a quote ends with it


def test_language_detection():
    assert detect("她很开心。") == "zh"
    assert detect('The subtitle says: "\u6211\u5f88\u5f00\u5fc3\u3002" He looks sad.') == "en"  # quoted Chinese
    assert detect("在视频中，Tom 说 OK，然后笑了。") == "zh"
    assert detect("") == "en"


def test_forced_language_changes_the_rules():
    text = "她并不生气。"
    assert LexiconExtractor(lang="zh").extract(text).labels == []
    # English rules know no Chinese negator: the form is found, the negation is not
    assert LexiconExtractor(lang="en").extract(text).labels == ["angry"]
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        LexiconExtractor(lang="fr")


def test_translation_file_errors_name_the_line(tmp_path):
    path = tmp_path / "zh.tsv"
    path.write_text("# comment\nangry\t生气\nzorbish\t哈哈\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=r"zh.tsv, line 3: label 'zorbish' is not a label of the lexicon"):
        Lexicon.load(translations=[path])
    path.write_text("angry\t生气\nsad\t生气\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=r"line 2: form '生气' already maps"):
        Lexicon.load(translations=[path])


def test_labels_cli_mixed_file_row_by_row(tmp_path, capsys):
    src, out = tmp_path / "mixed.csv", tmp_path / "out.csv"
    rows = 'name,description\na,"He is not angry, just tired."\nb,"她并不生气，只是很疲惫。"\n'
    src.write_text(rows, encoding="utf-8")
    assert main(["labels", "--csv", str(src), "--out", str(out), "--explain"]) == 0
    printed = capsys.readouterr().out
    assert "language   en" in printed and "language   zh" in printed
    assert "negated    angry          '生气'" in printed
    with out.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["name"], r["labels"], r["groups"]) for r in rows] == [("a", "tired", "bad"), ("b", "tired", "bad")]
    assert main(["labels", "--text", "她并不生气。", "--lang", "en"]) == 0
    assert json.loads(capsys.readouterr().out) == {"labels": ["angry"], "groups": ["angry"]}


@pytest.mark.parametrize(
    "argv",
    [
        ["labels", "--text", "x"],
        ["score", "--gt", "g.csv", "--pred", "p.csv"],
        ["eval", "--model", "m", "--shards", "s", "--out", "o"],
        ["bench", "--model", "m", "--suite", "s.yaml", "--out", "o"],
    ],
)
def test_every_labelling_command_takes_lang(argv):
    def extractor_lang(args) -> str:  # the ExtractorConfig the command builds, from its settings flags
        settings = {k.removeprefix("setting:"): v for k, v in vars(args).items() if k.startswith("setting:")}
        lang = settings.get("lang", settings.get("extractor.lang"))
        return build_extractor(ExtractorConfig(**({"lang": lang} if lang else {}))).lang

    assert extractor_lang(build_parser().parse_args([*argv, "--lang", "zh"])) == "zh"
    assert extractor_lang(build_parser().parse_args(argv)) == "auto"


def test_score_chinese_ground_truth_against_english_predictions(tmp_path):
    gt, pred, out = tmp_path / "gt.csv", tmp_path / "pred.csv", tmp_path / "score.json"
    gt.write_text("name,chinese\na,他很生气，并不难过。\nb,她似乎有些担心。\n", encoding="utf-8")
    pred.write_text('name,description\na,"He is furious."\nb,"She is happy."\n', encoding="utf-8")
    assert main(["score", "--gt", str(gt), "--pred", str(pred), "--bootstrap", "0", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())["model"]
    assert metrics["level1"]["accuracy_s"] == 0.5 and metrics["level2"]["recall_s"] == 0.5


def test_emer_fine_chinese_agrees_with_english(emer_fine_csv):
    with emer_fine_csv.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    en = [e.labels for e in LexiconExtractor(lang="en").extract_many([r["english"] for r in rows])]
    zh = [e.labels for e in LexiconExtractor(lang="zh").extract_many([r["chinese"] for r in rows])]
    metrics = emer_metrics(en, zh, bootstrap=0)
    coverage = sum(map(bool, zh)) / len(zh)
    print(f"EMER-Fine zh vs en: level-1 F {metrics['level1']['f_s']:.3f}, level-2 F "
          f"{metrics['level2']['f_s']:.3f}, Chinese coverage {coverage:.1%}")
    assert len(rows) == 332
    assert metrics["level1"]["f_s"] >= 0.85
    assert coverage >= 0.98
    # auto detection picks the right rules on every row of both columns
    auto = LexiconExtractor()
    assert {auto.language(r["chinese"]) for r in rows} == {"zh"}
    assert {auto.language(r["english"]) for r in rows} == {"en"}
