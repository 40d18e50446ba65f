"""Read the CSV tables the evaluation scores: ground truth and predictions, one row per sample name.

A table has a ``name`` column and a description column (``description``; else ``english``, else ``chinese``,
as in the EMER-Fine release), a ``labels`` column (comma-separated emotion words), or both. Errors name the
file, the row (1-based line, header = 1) and the column.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from affectgpt.corpus import parse_labels

TEXT_COLUMNS = ("description", "english", "chinese")  # the first one a table has is its description


class TableError(ValueError):
    """A table that cannot be scored; the message names the file, row and column."""


@dataclass(frozen=True)
class Row:
    name: str
    text: str  # the description; "" when the table has no description column
    labels: list[str] | None  # the labels column; None when the table has none
    line: int


def read_table(path: str | Path, text_column: str | None = None) -> list[Row]:
    """Rows of ``path``; ``text_column`` overrides the description column's name."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path} does not exist")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise TableError(f"{path}: not UTF-8 (byte {e.start})") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        raise TableError(f"{path} is empty (expected a header row with 'name' and 'description' or 'labels')")
    header = [h.strip().lower() for h in rows[0]]
    if "name" not in header:
        raise TableError(f"{path}, row 1: no 'name' column (header: {header})")
    if text_column is not None:
        if text_column not in header:
            raise TableError(f"{path}, row 1: no {text_column!r} column (header: {header})")
        text_col = header.index(text_column)
    else:
        text_col = next((header.index(c) for c in TEXT_COLUMNS if c in header), None)
    label_col = header.index("labels") if "labels" in header else None
    if text_col is None and label_col is None:
        raise TableError(f"{path}, row 1: needs a 'description' (or 'english', 'chinese') or a 'labels' column "
                         f"(header: {header})")
    if len(rows) == 1:
        raise TableError(f"{path} has a header but no rows")
    out: list[Row] = []
    seen: dict[str, int] = {}
    for line, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue  # a blank line, e.g. a trailing newline written twice
        if len(cells) < len(header):
            raise TableError(f"{path}, row {line}: {len(cells)} cells, header has {len(header)}")
        name = cells[header.index("name")].strip()
        if not name:
            raise TableError(f"{path}, row {line}: empty 'name'")
        if name in seen:
            raise TableError(f"{path}, row {line}: duplicate name {name!r} (first at row {seen[name]})")
        seen[name] = line
        out.append(Row(
            name=name,
            text=cells[text_col].strip() if text_col is not None else "",
            labels=parse_labels(cells[label_col]) if label_col is not None else None,
            line=line,
        ))
    return out
