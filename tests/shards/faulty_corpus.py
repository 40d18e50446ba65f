"""A synthetic corpus with one of each fault the pack job must quarantine (or, for silence, keep)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affectgpt.media import write_clip
from affectgpt.synth.corpus_writer import SynthConfig, write_corpus


@dataclass(frozen=True)
class FaultyCorpus:
    root: Path
    good: frozenset[str]  # names that must come out packed
    quarantined: dict[str, str]  # name -> a fragment of the quarantine reason
    no_audio: frozenset[str]  # packed with has_audio false


def make_faulty_corpus(root: Path, num: int = 16, seconds: float = 1.0, size: int = 64) -> FaultyCorpus:
    write_corpus(SynthConfig(out=root, num=num, seconds=seconds, size=size, fine_fraction=0, test_fraction=0))
    path = root / "coarse.csv"
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    video = {r["name"]: root / "videos" / f"{r['name']}.mp4" for r in rows}
    names = [r["name"] for r in rows]
    truncated, missing, empty, blank, bad_utf8, silent = names[:6]
    data = video[truncated].read_bytes()
    video[truncated].write_bytes(data[: len(data) // 3])
    video[missing].unlink()
    video[empty].write_bytes(b"")
    frames = np.random.default_rng(0).integers(0, 255, (8, size, size, 3), dtype=np.uint8)
    write_clip(video[silent], frames, fps=8, audio=None, sample_rate=16000)
    rows[3]["subtitle"] = ""
    rows[4]["subtitle"] = "@@latin-1@@"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["name", "subtitle", "description", "labels"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    text = buf.getvalue() + "sample_99999999,a row that lost its columns\n"
    path.write_bytes(text.encode("utf-8").replace(b"@@latin-1@@", b"caf\xe9"))
    quarantined = {
        truncated: "undecodable",
        missing: "does not exist",
        empty: "empty (0 bytes)",
        blank: "empty 'subtitle'",
        bad_utf8: "not valid UTF-8",
        "sample_99999999": "missing column",
    }
    return FaultyCorpus(root, frozenset(names) - set(quarantined), quarantined, frozenset([silent]))
