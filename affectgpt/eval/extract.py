"""Emotion labels that a description (English or Chinese) attributes to the person, by lexicon and scope rules.

Every lexicon match becomes a Mention with a status; only ``person`` mentions are the person's labels. The
rules are one implementation for every language; ``languages`` holds each language's words (below, English
examples first, Chinese after the slash).

* ``quoted``: inside double quotes (straight or curly) or corner brackets 「」『』 - the subtitle's words, not
  the person's state.
* ``negated``: after a negator in the same clause ("not happy", "no sign of fear", "without nervousness or
  unease", "less optimistic", "rather than angry" / 不开心... 没有紧张或不安, 并非愤怒, 毫无笑意). The scope
  runs to the end of the clause: punctuation (, . ; ! ? / ，。；！？), a contrastive or subordinating word (but,
  though, which ... / 但是, 而是, 因为 ...), or a concealment verb (below). "not only", "a little" / 不断,
  不仅, 忍不住 are not negators, and a form that starts with a negator (不安 uneasy, 无奈 helpless) is that form.
* ``pretended``: after pretend/feign/fake/forced / 假装, 故作 in the same clause - shown, not felt.
* ``not_person``: the word qualifies a thing or a body part, not the person ("a tense atmosphere", "a
  serious issue", "the mouth is tense" / 紧张的气氛, 严肃的问题, 气氛很紧张).
* ``person``: everything else, including:
  - hedged emotions ("may indicate anxiety", "a hint of teasing" / 似乎, 可能, 有些, 一丝): EMER descriptions
    hedge nearly every inference, and the annotated labels include those emotions, so hedges keep them;
  - concealed emotions ("tries to hide his anxiety", "cannot hide her joy" / 掩饰, 无法掩饰): hiding implies
    feeling, so a concealment verb keeps what follows and ends any negation before it.

The language of each text is detected (``languages.detect``) unless the extractor is given one.

Limits, knowingly: unquoted subtitle text and emotions of other people in the scene ("the other person is
angry" / 对方很生气) are attributed to the person; irony is not detected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from affectgpt.eval.languages import LANGS, QUOTES, RULES, Rules, detect
from affectgpt.eval.lexicon import Entry, Lexicon, default_lexicon

# a Latin word (hyphens and apostrophes inside), one Han character, or a punctuation mark that ends a clause;
# the enumeration comma 、 is not one of them (没有紧张、不安: the negation runs on)
_TOKEN = re.compile(
    r"[A-Za-z]+(?:['\u2019-][A-Za-z]+)*|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
    r"|[.,;:!?()\[\]\uff0c\u3002\uff1b\uff1a\uff01\uff1f\uff08\uff09\u2026]"
)


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
    """The deterministic, offline default extractor; ``lang`` is "en", "zh" or "auto" (detected per text)."""

    def __init__(self, lexicon: Lexicon | None = None, lang: str = "auto"):
        if lang != "auto" and lang not in RULES:
            raise ValueError(f"unknown language {lang!r}: expected auto or one of {', '.join(LANGS)}")
        self.lexicon = lexicon or default_lexicon()
        self.lang = lang

    def language(self, text: str) -> str:
        return detect(text) if self.lang == "auto" else self.lang

    def extract(self, text: str) -> Extraction:
        entries = [self.lexicon.labels[m.label] for m in self.mentions(text) if m.status == "person"]
        return _extraction(entries)

    def extract_many(self, texts: list[str]) -> list[Extraction]:
        return [self.extract(t) for t in texts]

    def mentions(self, text: str) -> list[Mention]:
        """Every lexicon match in ``text`` with its attribution status, by the rules of the text's language."""
        rules = RULES[self.language(text)]
        quoted = [m.span() for m in QUOTES.finditer(text)]
        toks = [(m.group().lower().replace("\u2019", "'"), m.start(), m.end()) for m in _TOKEN.finditer(text)]
        words = [t[0] for t in toks]
        out: list[Mention] = []
        negated = pretended = was_quoted = False
        i = 0
        while i < len(toks):
            word, start, _ = toks[i]
            in_quote = any(a <= start < b for a, b in quoted)
            if _is_boundary(words, i, rules) or in_quote != was_quoted:
                negated = pretended = False  # a clause, or a quotation, starts or ends here
            was_quoted = in_quote
            entry, n = self._match(words, i)
            if rules.concealment.starting(words, i):
                negated = False
            if n == 0 and _negates(words, i, rules):  # a form that starts with a negator (不安) is that form
                negated = True
            if rules.pretence.starting(words, i):
                pretended = True
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
            elif self._qualifies_thing(words, i, n, rules):
                status = "not_person"
            else:
                status = "person"
            out.append(Mention(entry.label, text[start:end], start, end, status))
            i += n
        return out

    def _match(self, words: list[str], i: int) -> tuple[Entry | None, int]:
        """The longest lexicon form starting at token i: (entry, length); stop forms give (None, length),
        no form (None, 0)."""
        for n in range(min(self.lexicon.max_words, len(words) - i), 1, -1):
            key = tuple(words[i : i + n])
            if key in self.lexicon.forms:
                return self.lexicon.forms[key], n
        if (words[i],) in self.lexicon.forms:
            return self.lexicon.forms[(words[i],)], 1
        entry = self.lexicon.lookup(words[i])
        return entry, int(entry is not None)

    def _form_ending(self, words: list[str], j: int) -> int:
        """Length of the longest emotion form that ends at token j (0: none)."""
        for n in range(min(self.lexicon.max_words, j + 1), 1, -1):
            if self.lexicon.forms.get(tuple(words[j - n + 1 : j + 1])):
                return n
        return int(self.lexicon.lookup(words[j]) is not None)

    def _qualifies_thing(self, words: list[str], i: int, n: int, rules: Rules) -> bool:
        """Whether the emotion word at i..i+n qualifies a thing or body part: "tense atmosphere", "mouth is
        tense" / 紧张的气氛, 气氛很紧张. Walks over modifiers and other emotion words to the noun."""
        j = i + n  # forwards: "a tense or serious atmosphere", 紧张而严肃的气氛
        while j < len(words) and j < i + n + 6:
            step = rules.modifiers.starting(words, j) or self._match(words, j)[1]
            if not step:
                break
            j += step
        if rules.not_person_nouns.starting(words, j):
            return True
        j = i - 1  # backwards: "the atmosphere is tense and serious", 气氛显得有些紧张
        while j >= 0 and j > i - 8:
            adverb = rules.adverb_suffix and words[j].endswith(rules.adverb_suffix)
            step = rules.modifiers.ending(words, j) or int(bool(adverb)) or self._form_ending(words, j)
            if not rules.copula_required:
                step = step or rules.copulas.ending(words, j)
            if not step:
                break
            j -= step
        if rules.copula_required:
            copula = rules.copulas.ending(words, j)
            return bool(copula) and bool(rules.not_person_nouns.ending(words, j - copula))
        return bool(rules.not_person_nouns.ending(words, j))


def _is_boundary(words: list[str], i: int, rules: Rules) -> bool:
    return not words[i][0].isalpha() or bool(rules.clause_words.starting(words, i))


def _negates(words: list[str], i: int, rules: Rules) -> bool:
    """Whether a negator starts at token i and no non-negating phrase covers it ("not only", 不断)."""
    if rules.not_negating.covering(words, i):
        return False
    if rules.negating_suffix and words[i].endswith(rules.negating_suffix):
        return True
    return bool(rules.negators.starting(words, i))
