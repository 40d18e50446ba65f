"""Emotion labels that an English description attributes to the person, by lexicon and scope rules.

Every lexicon match becomes a Mention with a status; only ``person`` mentions are the person's labels.

* ``quoted``: inside double quotes (straight or curly) - the subtitle's words, not the person's state.
* ``negated``: after a negator in the same clause ("not happy", "no sign of fear", "without nervousness or
  unease", "less optimistic", "rather than angry"). The scope runs to the end of the clause: punctuation,
  a contrastive or subordinating word (but, though, while, which ...), or a concealment verb (below).
  "not only" and "a little" are not negators.
* ``pretended``: after pretend/feign/fake/forced in the same clause - shown, not felt.
* ``not_person``: the word qualifies a thing or a body part, not the person ("a tense atmosphere", "a
  serious issue", "the mouth is tense").
* ``person``: everything else, including:
  - hedged emotions ("may indicate anxiety", "a hint of teasing"): EMER descriptions hedge nearly every
    inference, and the annotated labels include those emotions, so hedges keep them;
  - concealed emotions ("tries to hide his anxiety", "cannot hide her joy"): hiding implies feeling, so a
    concealment verb keeps what follows and ends any negation before it.

Limits, knowingly: unquoted subtitle text and emotions of other people in the scene ("the other person is
angry") are attributed to the person; irony is not detected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from affectgpt.eval.lexicon import Entry, Lexicon, default_lexicon

NEGATORS = frozenset(
    "not no never without nor neither none nothing hardly barely lacks lack lacking absence less "
    "cannot".split()
)
NEGATING_PHRASES = (("rather", "than"), ("instead", "of"), ("free", "of"), ("no", "longer"))
NOT_NEGATING = (("not", "only"), ("a", "little"), ("no", "doubt"), ("nothing", "but"))
PRETENCE = frozenset(
    "pretend pretends pretended pretending feign feigns feigned feigning fake faked faking forced".split()
)
CONCEALMENT = frozenset(
    "hide hides hid hidden hiding conceal conceals concealed concealing suppress suppresses suppressed "
    "suppressing mask masks masked masking contain contains contained containing restrain restrains "
    "restrained restraining".split()
)
CLAUSE_WORDS = frozenset(
    "but yet however although though while whereas which who because since then therefore thus "
    "whether if when".split()
)
# Things and body parts an emotion word may qualify without being the person's state.
NOT_PERSON_NOUNS = frozenset(
    "atmosphere situation situations topic topics issue issues matter matters problem problems question "
    "questions conversation conversations discussion discussions scene scenes environment setting "
    "background music news story stories event events moment moments film movie lighting weather place "
    "room outcome results result task work thing things relationship relationships subject "
    "mouth lips jaw jaws muscles muscle shoulders shoulder neck hands hand fists fingers brow brows "
    "eyebrows forehead body".split()
)
COPULAS = frozenset("is are was were be been seems seem appears appear looks look remains remain becomes".split())
MODIFIERS = frozenset(
    "very slightly somewhat rather quite a bit little too so more most extremely also still and or "
    "relatively fairly increasingly particularly clearly obviously visibly".split()
)
_QUOTES = re.compile(r'"[^"]*"|\u201c[^\u201d]*\u201d|\u300c[^\u300d]*\u300d')
_TOKEN = re.compile(r"[A-Za-z]+(?:['\u2019-][A-Za-z]+)*|[.,;:!?()\[\]]")


@dataclass(frozen=True)
class Mention:
    label: str
    form: str  # the text as written
    start: int  # character offsets in the description
    end: int
    status: str  # person | negated | pretended | quoted | not_person


@dataclass(frozen=True)
class Extraction:
    labels: list[str]  # the person's labels, in order of first mention, without repeats
    groups: list[str]  # level-1 groups of those labels, same order, without repeats

    def to_json(self) -> dict[str, list[str]]:
        return {"labels": self.labels, "groups": self.groups}


class Extractor(Protocol):
    """Anything that turns descriptions into labels: the lexicon extractor or an LLM extractor."""

    def extract_many(self, texts: list[str]) -> list[Extraction]: ...


def from_labels(words: list[str], lexicon: Lexicon | None = None) -> Extraction:
    """An Extraction from given label words (a labels column), normalised through the lexicon."""
    lexicon = lexicon or default_lexicon()
    entries = [lexicon.normalise(w) for w in words if w.strip()]
    return _extraction(entries)


def _extraction(entries: list[Entry]) -> Extraction:
    labels = list(dict.fromkeys(e.label for e in entries))
    groups = list(dict.fromkeys(e.level1 for e in entries))
    return Extraction(labels, groups)


class LexiconExtractor:
    """The deterministic, offline default extractor."""

    def __init__(self, lexicon: Lexicon | None = None):
        self.lexicon = lexicon or default_lexicon()

    def extract(self, text: str) -> Extraction:
        entries = [self.lexicon.labels[m.label] for m in self.mentions(text) if m.status == "person"]
        return _extraction(entries)

    def extract_many(self, texts: list[str]) -> list[Extraction]:
        return [self.extract(t) for t in texts]

    def mentions(self, text: str) -> list[Mention]:
        """Every lexicon match in ``text`` with its attribution status."""
        quoted = [m.span() for m in _QUOTES.finditer(text)]
        toks = [(m.group().lower().replace("\u2019", "'"), m.start(), m.end()) for m in _TOKEN.finditer(text)]
        words = [t[0] for t in toks]
        out: list[Mention] = []
        negated = pretended = was_quoted = False
        i = 0
        while i < len(toks):
            word, start, _ = toks[i]
            in_quote = any(a <= start < b for a, b in quoted)
            if _is_boundary(word) or in_quote != was_quoted:
                negated = pretended = False  # a clause, or a quotation, starts or ends here
            was_quoted = in_quote
            if word in CONCEALMENT:
                negated = False
            if _negates(words, i):
                negated = True
            if word in PRETENCE:
                pretended = True
            entry, n = self._match(words, i)
            if entry is None:
                i += max(n, 1)
                continue
            end = toks[i + n - 1][2]
            if in_quote:
                status = "quoted"
            elif negated:
                status = "negated"
            elif pretended:
                status = "pretended"
            elif _qualifies_thing(words, i, n, self.lexicon):
                status = "not_person"
            else:
                status = "person"
            out.append(Mention(entry.label, text[start:end], start, end, status))
            i += n
        return out

    def _match(self, words: list[str], i: int) -> tuple[Entry | None, int]:
        """The longest lexicon form starting at token i: (entry, length); stop forms give (None, length)."""
        for n in range(min(self.lexicon.max_words, len(words) - i), 1, -1):
            key = tuple(words[i : i + n])
            if key in self.lexicon.forms:
                return self.lexicon.forms[key], n
        return self.lexicon.lookup(words[i]), 1


def _is_boundary(word: str) -> bool:
    return word in CLAUSE_WORDS or not word[0].isalpha()


def _negates(words: list[str], i: int) -> bool:
    pair = tuple(words[i : i + 2])
    previous = tuple(words[max(i - 1, 0) : i + 1])
    if pair in NOT_NEGATING or previous in NOT_NEGATING:
        return False
    return words[i] in NEGATORS or words[i].endswith("n't") or pair in NEGATING_PHRASES


def _qualifies_thing(words: list[str], i: int, n: int, lexicon: Lexicon) -> bool:
    """Whether the emotion word at i..i+n qualifies a thing/body part: "tense atmosphere", "mouth is tense"."""
    j = i + n  # forwards over coordinated adjectives: "a tense or serious atmosphere"
    while j < len(words) and j < i + n + 4 and (words[j] in MODIFIERS or lexicon.lookup(words[j])):
        j += 1
    if j < len(words) and words[j] in NOT_PERSON_NOUNS:
        return True
    j = i - 1  # backwards to a copula: "the atmosphere is tense and serious"
    while j >= 0 and j > i - 7 and (words[j] in MODIFIERS or words[j].endswith("ly") or lexicon.lookup(words[j])):
        j -= 1
    if j >= 1 and words[j] in COPULAS:
        return words[j - 1] in NOT_PERSON_NOUNS
    return False
