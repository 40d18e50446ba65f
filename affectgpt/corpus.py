"""Read a corpus into sample records. All input validation of corpora lives here.

Two CSV layouts are understood:

* the project's corpus layout (what ``affectgpt synth`` writes, and what a prepared MER2024 release looks
  like): ``name,subtitle,description,labels`` with ``labels`` comma-separated and possibly empty; an
  unlabelled collection (input to pre-labelling) may have only ``name,subtitle``;
* the EMER-Fine release ``name,chinese,english`` (final-EMER-reason.csv): ``english`` is the description;
  subtitle and labels are not given and stay empty.

Videos live in ``<corpus>/videos/<name>.mp4`` (``.avi``/``.mkv``/``.mov`` are accepted too).
Errors name the file, the row (1-based record number, header = row 1) and the column.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
CORPUS_COLUMNS = ("name", "subtitle", "description", "labels")
REQUIRED_COLUMNS = ("name", "subtitle")  # an unlabelled collection (pre-labelling input) has no targets yet
EMER_FINE_COLUMNS = ("name", "chinese", "english")


class CorpusError(ValueError):
    """Bad corpus input; the message names the file, the row and the column."""


@dataclass(frozen=True)
class Record:
    name: str
    subtitle: str
    description: str
    labels: list[str] = field(default_factory=list)
    video: Path | None = None  # None when the corpus has no video for this name (see ``require_video``)
    row: int = 0  # 1-based line in the CSV, for error messages downstream


@dataclass(frozen=True)
class RowProblem:
    """A row that cannot become a Record: reported, never dropped silently."""

    name: str
    row: int
    reason: str


def split_csv(corpus: str | Path, split: str) -> Path:
    return Path(corpus) / f"{split}.csv"


def find_video(corpus: str | Path, name: str) -> Path | None:
    for suffix in VIDEO_SUFFIXES:
        path = Path(corpus) / "videos" / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def parse_labels(cell: str) -> list[str]:
    return [w.strip().lower() for w in cell.replace(";", ",").split(",") if w.strip()]


def scan_csv(path: str | Path, corpus: str | Path | None = None) -> tuple[list[Record], list[RowProblem]]:
    """Read a corpus or EMER-Fine CSV, collecting per-row problems instead of stopping at the first.

    The whole file must be UTF-8 with a known header, else CorpusError (nothing can be read). Row-level
    problems (missing cell, empty name or subtitle where one is required, duplicate name, missing video when
    ``corpus`` is given) come back as RowProblem so that batch jobs can quarantine them.
    """
    path = Path(path)
    rows = _read_rows(path)
    header, body = rows[0], rows[1:]
    layout = _layout(path, header)
    col = {name: i for i, name in enumerate(header)}
    records: list[Record] = []
    problems: list[RowProblem] = []
    seen: set[str] = set()
    for offset, cells in enumerate(body):
        line = offset + 2
        name = cells[col["name"]].strip() if len(cells) > col["name"] else ""
        problem = _row_problem(cells, header, layout, name, seen)
        if problem is None and corpus is not None and find_video(corpus, name) is None:
            problem = f"video {Path(corpus) / 'videos' / name}.mp4 does not exist"
        if problem:
            problems.append(RowProblem(name or f"<row {line}>", line, problem))
            continue
        seen.add(name)
        if layout == "emer-fine":
            record = Record(name, "", cells[col["english"]].strip(), [], row=line)
        else:
            record = Record(
                name,
                cells[col["subtitle"]].strip(),
                cells[col["description"]].strip() if "description" in col else "",
                parse_labels(cells[col["labels"]]) if "labels" in col else [],
                row=line,
            )
        if corpus is not None:
            record = Record(**{**record.__dict__, "video": find_video(corpus, name)})
        records.append(record)
    return records, problems


def read_csv(path: str | Path, corpus: str | Path | None = None) -> list[Record]:
    """Like scan_csv, but any bad row is an error naming the file and row (for small curated files)."""
    records, problems = scan_csv(path, corpus)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more bad rows)" if len(problems) > 1 else ""
        raise CorpusError(f"{path}, row {first.row} ({first.name}): {first.reason}{more}")
    return records


def read_split(corpus: str | Path, split: str, require_video: bool = True) -> list[Record]:
    """The records of ``<corpus>/<split>.csv``, each with its video path."""
    path = split_csv(corpus, split)
    if not path.is_file():
        available = sorted(p.stem for p in Path(corpus).glob("*.csv"))
        raise CorpusError(f"{path} does not exist (splits in {corpus}: {', '.join(available) or 'none'})")
    return read_csv(path, corpus if require_video else None)


def _read_rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise CorpusError(f"{path} does not exist")
    # Undecodable bytes become lone surrogates so that one bad cell is a row problem, not a lost file.
    text = path.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        raise CorpusError(f"{path} is empty (expected a header row)")
    rows[0] = [h.strip().lower() for h in rows[0]]
    return rows


def _layout(path: Path, header: list[str]) -> str:
    if all(c in header for c in REQUIRED_COLUMNS):
        return "corpus"
    if all(c in header for c in EMER_FINE_COLUMNS):
        return "emer-fine"
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    raise CorpusError(
        f"{path}, row 1: header {header} lacks column(s) {missing}; expected "
        f"{','.join(CORPUS_COLUMNS)} or the EMER-Fine layout {','.join(EMER_FINE_COLUMNS)}"
    )


def _row_problem(cells: list[str], header: list[str], layout: str, name: str, seen: set[str]) -> str | None:
    if len(cells) < len(header):
        return f"has {len(cells)} cells, header has {len(header)} (missing column {header[len(cells)]!r})"
    if not name:
        return "empty 'name'"
    for column, cell in zip(header, cells, strict=False):
        if any("\udc80" <= ch <= "\udcff" for ch in cell):
            return f"column {column!r} is not valid UTF-8"
    if name in seen:
        return f"duplicate name {name!r}"
    required = ("english",) if layout == "emer-fine" else ("subtitle",)
    for column in required:
        if not cells[header.index(column)].strip():
            return f"empty {column!r}"
    return None
