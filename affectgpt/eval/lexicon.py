"""The emotion lexicon (``lexicon.tsv``, the project's own data file) and its rule-based lemmatiser.

The lexicon maps surface forms to a canonical emotion label and each label to its level-2 and level-1 group
on the emotion wheel (the file's header cites the wheel and its deviations) and to its valence (positive,
negative or neutral, for the sentiment task). The lemmatiser only proposes
regular derivations (-ly, -ness, plural, comparative) of forms the file lists; it never invents a label.

Other languages add their surface forms of the same labels from their own file (``lexicon_zh.tsv``: Chinese),
so every language's labels land on one wheel and metrics compare across languages. All forms live in one
table: a Chinese form is a tuple of Han characters (each character is a token), an English one a tuple of
Latin words, so they never collide, and ``normalise`` maps a label word of any language.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

STOP = "-"  # label of the stop-form row: forms that must never be read as an emotion
VALENCES = ("positive", "negative", "neutral")
TRANSLATIONS = ("lexicon_zh.tsv",)  # packaged files of other languages' forms: label<TAB>forms


class LexiconError(ValueError):
    """A malformed lexicon file; the message names the file and line."""


@dataclass(frozen=True)
class Entry:
    label: str
    level2: str
    level1: str
    valence: str | None = None  # one of VALENCES; None for words the lexicon does not know


@dataclass(frozen=True)
class Lexicon:
    forms: dict[tuple[str, ...], Entry | None]  # token tuple -> entry; None for stop forms
    labels: dict[str, Entry]
    max_words: int  # longest multi-word form, in tokens

    @classmethod
    def load(cls, path: str | Path | None = None, translations: Sequence[str | Path] | None = None) -> Lexicon:
        """Read a lexicon TSV, then the forms files of other languages onto its labels.

        The defaults are the packaged ``affectgpt/eval/lexicon.tsv`` and, with it, the packaged translations
        (``TRANSLATIONS``); a lexicon of your own gets only the ``translations`` you name.
        """
        text, where = _read(path, "lexicon.tsv")
        if translations is None:
            others = [_read(None, name) for name in TRANSLATIONS] if path is None else []
        else:
            others = [_read(t, "") for t in translations]
        forms: dict[tuple[str, ...], Entry | None] = {}
        labels: dict[str, Entry] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            cells = line.split("\t")
            if len(cells) not in (4, 5):
                raise LexiconError(f"{where}, line {number}: expected 4 or 5 tab-separated cells "
                                   f"(label, level2, level1, valence[, forms]), got {len(cells)}")
            label, level2, level1, valence = (c.strip() for c in cells[:4])
            if label != STOP and valence not in VALENCES:
                raise LexiconError(f"{where}, line {number}: valence {valence!r} of {label!r} is not one of "
                                   f"{', '.join(VALENCES)}")
            extra = [f.strip().lower() for f in cells[4].split(",")] if len(cells) == 5 else []
            entry = None if label == STOP else Entry(label, level2, level1, valence)
            if entry is not None:
                if label in labels:
                    raise LexiconError(f"{where}, line {number}: label {label!r} is listed twice")
                labels[label] = entry
                extra.insert(0, label)
            for form in filter(None, extra):
                key = tuple(tokens(form))
                if key in forms and forms[key] != entry:
                    raise LexiconError(f"{where}, line {number}: form {form!r} already maps to {forms[key]}")
                forms[key] = entry
        if not labels:
            raise LexiconError(f"{where}: no labels")
        for other_text, other_where in others:
            _add_translation(other_text, other_where, labels, forms)
        return cls(forms, labels, max(len(k) for k in forms))

    def lookup(self, word: str) -> Entry | None:
        """The entry of one word or of its regular derivation; None for stop forms and unknown words."""
        for candidate in lemma_candidates(word):
            if (candidate,) in self.forms:
                return self.forms[(candidate,)]
        return None

    def normalise(self, word: str) -> Entry:
        """Map an open-vocabulary label ("anxiety", "Angrily", "fed up", "焦虑") to its entry.

        Words the lexicon does not know become their own groups at every level, so they still match
        themselves exactly and are never silently dropped (metrics count them as unknown).
        """
        key = tuple(tokens(word))
        entry = self.forms.get(key) or (self.lookup(key[0]) if len(key) == 1 else None)
        if entry:
            return entry
        word = "".join(t if i == 0 or (is_han(t) and is_han(key[i - 1])) else " " + t for i, t in enumerate(key))
        return Entry(word, word, word)

    def is_known(self, label: str) -> bool:
        return label in self.labels


def _read(path: str | Path | None, packaged: str) -> tuple[str, str]:
    """(text, name for messages) of a file given by path, or of the packaged file when path is None."""
    if path is None:
        text = resources.files("affectgpt.eval").joinpath(packaged).read_text(encoding="utf-8")
        return text, f"affectgpt/eval/{packaged}"
    return Path(path).read_text(encoding="utf-8"), str(path)


def _add_translation(
    text: str, where: str, labels: dict[str, Entry], forms: dict[tuple[str, ...], Entry | None]
) -> None:
    """Add one language's forms (rows ``label<TAB>forms``, label from the wheel or "-") to ``forms``."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t")
        if len(cells) != 2:
            raise LexiconError(f"{where}, line {number}: expected 2 tab-separated cells, got {len(cells)}")
        label = cells[0].strip()
        if label != STOP and label not in labels:
            raise LexiconError(f"{where}, line {number}: label {label!r} is not a label of the lexicon")
        entry = None if label == STOP else labels[label]
        for form in filter(None, (f.strip() for f in cells[1].split(","))):
            key = tuple(tokens(form))
            if not key:
                raise LexiconError(f"{where}, line {number}: form {form!r} has no letters")
            if key in forms and forms[key] != entry:
                raise LexiconError(f"{where}, line {number}: form {form!r} already maps to {forms[key]}")
            forms[key] = entry


def is_han(ch: str) -> bool:
    """A Chinese (Han) character: CJK unified ideographs, extension A, compatibility ideographs."""
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\uf900" <= ch <= "\ufaff"


def tokens(text: str) -> list[str]:
    """Lower-case word tokens; hyphenated words and contractions stay one token, each Han character is one."""
    out, word = [], []
    for ch in text.lower().replace("\u2019", "'") + " ":
        if is_han(ch):
            if word:
                out.append("".join(word).strip("-'"))
                word = []
            out.append(ch)
        elif ch.isalpha() or (word and ch in "-'"):
            word.append(ch)
        elif word:
            out.append("".join(word).strip("-'"))
            word = []
    return [w for w in out if w]


def lemma_candidates(word: str) -> list[str]:
    """The word, then the regular derivations it could be a form of, most specific first."""
    w = word.lower()
    out = [w]
    for suffix, replacement in (
        ("ily", "y"), ("ally", ""), ("bly", "ble"), ("ly", ""),
        ("iness", "y"), ("ness", ""),
        ("ies", "y"), ("es", ""), ("s", ""),
        ("ier", "y"), ("iest", "y"), ("er", ""), ("est", ""),
    ):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            out.append(w[: len(w) - len(suffix)] + replacement)
    return out


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    return Lexicon.load()
