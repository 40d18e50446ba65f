"""Emotion wheels: which group each emotion label belongs to, at level 1 (core emotions) and level 2 (rings).

The shipped wheel is the lexicon's own ``level1``/``level2`` columns. Other wheels come from a TSV file (``--wheel
FILE`` in ``score``, ``eval`` and ``bench``), one label a line::

    # comments and blank lines are ignored; a header line "label<TAB>level1<TAB>level2" may open the file
    joyful<TAB>happy<TAB>joy
    anxious<TAB>fear<TAB>anxiety

Labels are read through the lexicon, so ``joy`` and ``joyful`` name the same row. A label a wheel does not list
is its own group on that wheel (it still matches itself) and is counted as ``outside_wheel``, never dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from affectgpt.eval.lexicon import Lexicon, LexiconError, default_lexicon

LEVELS = ("level2", "level1")
DEFAULT = "default"  # the name of the shipped wheel in metrics


@dataclass(frozen=True)
class Wheel:
    name: str
    groups: dict[str, dict[str, str]]  # canonical label -> {"level1": group, "level2": group}
    lexicon: Lexicon

    @classmethod
    def default(cls, lexicon: Lexicon | None = None) -> Wheel:
        lexicon = lexicon or default_lexicon()
        groups = {label: {"level1": e.level1, "level2": e.level2} for label, e in lexicon.labels.items()}
        return cls(DEFAULT, groups, lexicon)

    @classmethod
    def load(cls, path: str | Path, lexicon: Lexicon | None = None) -> Wheel:
        """Read a wheel TSV (label, level1, level2); errors name the file and line."""
        lexicon = lexicon or default_lexicon()
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise LexiconError(f"wheel {path}: cannot read it ({e})") from None
        groups: dict[str, dict[str, str]] = {}
        first_line: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            cells = [c.strip() for c in line.split("\t")]
            if cells[:3] == ["label", "level1", "level2"]:
                continue
            if len(cells) != 3 or not all(cells):
                raise LexiconError(f"wheel {path}, line {number}: expected 3 non-empty tab-separated cells "
                                   f"(label, level1, level2), got {line!r}")
            label = lexicon.normalise(cells[0]).label
            row = {"level1": cells[1], "level2": cells[2]}
            if label in groups and groups[label] != row:
                raise LexiconError(f"wheel {path}, line {number}: {cells[0]!r} (label {label!r}) is already "
                                   f"placed at line {first_line[label]} in another group")
            groups[label] = row
            first_line.setdefault(label, number)
        if not groups:
            raise LexiconError(f"wheel {path}: no labels")
        return cls(path.stem, groups, lexicon)

    def group(self, word: str, level: str) -> str:
        label = self.lexicon.normalise(word).label
        row = self.groups.get(label)
        return row[level] if row else label

    def groups_of(self, words: Iterable[str], level: str) -> set[str]:
        return {self.group(w, level) for w in words}

    def outside(self, label_lists: Sequence[Sequence[str]]) -> dict[str, int]:
        """Counts of the words this wheel does not place, by canonical label."""
        counts = Counter(label for ls in label_lists for label in (self.lexicon.normalise(w).label for w in ls)
                         if label not in self.groups)
        return dict(counts.most_common())


def load_wheels(paths: Sequence[str | Path] | None, lexicon: Lexicon | None = None) -> list[Wheel]:
    """The wheels named by ``--wheel`` options (``default`` names the shipped one); none given: the shipped
    wheel alone."""
    if not paths:
        return [Wheel.default(lexicon)]
    wheels = [Wheel.default(lexicon) if str(p) == DEFAULT else Wheel.load(p, lexicon) for p in paths]
    names = [w.name for w in wheels]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise LexiconError(f"wheel names (file stems) must differ: {', '.join(repeated)} given twice")
    return wheels
