"""Speaker groups: which population a held-out speaker stands for. Every table is per group.

- ``natural``: Kokoro's English voices kept for test only (``kokoro_en_af_nicole``,
  ``kokoro_en_bm_fable``: US/UK, female/male), neural voices trained on recordings of people;
- ``real``: a recorded person (``real_allison``);
- ``engine``: the earlier engine voices (formant, diphone, HMM, Pico, Piper, Kokoro's Japanese
  styles and their blends such as ``kokoro_gongitsune_tebukuro``).

A manifest row's ``group`` field, where present, wins over the name.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from pathlib import Path

GROUPS = ("natural", "real", "engine")  # the order of the report's tables
_KOKORO_ENGLISH = re.compile(r"kokoro_(en_)?[ab][fm]_[a-z]+$")  # a(merican)/b(ritish), f/m, name


def group_of(speaker: str, declared: str | None = None) -> str:
    """The group of ``speaker``: ``declared`` (a manifest's ``group`` field) if given, else from
    the name: ``real_*`` -> "real", a Kokoro English voice (``kokoro_[en_][ab][fm]_*``) ->
    "natural", anything else -> "engine"."""
    if declared:
        if declared not in GROUPS:
            raise ValueError(f"speaker {speaker}: group {declared!r} is not one of "
                             f"{', '.join(GROUPS)}")
        return declared
    if speaker.startswith("real_"):
        return "real"
    return "natural" if _KOKORO_ENGLISH.match(speaker) else "engine"


def declared_groups(data: str | Path) -> dict[str, str]:
    """Speaker -> the ``group`` field of the data's manifest (a ``.jsonl``/``.csv``/``.tsv`` file,
    or a folder holding ``manifest.jsonl``/``.csv``/``.tsv``); empty without one or without the
    field. Conflicting rows for one speaker raise ValueError."""
    path = Path(data)
    if path.is_dir():
        path = next((path / n for n in ("manifest.jsonl", "manifest.csv", "manifest.tsv")
                     if (path / n).is_file()), path)
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for row in _rows(path):
        speaker, group = str(row.get("speaker") or "").strip(), str(row.get("group") or "").strip()
        if not speaker or not group:
            continue
        if out.setdefault(speaker, group) != group:
            raise ValueError(f"{path}: speaker {speaker} is in groups {out[speaker]!r} and "
                             f"{group!r}; give each speaker one group.")
    return out


def _rows(path: Path) -> Iterable[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".jsonl", ".json"):
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # the dataset reader reports bad lines
            if isinstance(row, dict):
                yield row
    else:
        yield from csv.DictReader(text.splitlines(),
                                  delimiter="\t" if path.suffix.lower() == ".tsv" else ",")


def speaker_groups(data: str | Path, speakers: Iterable[str]) -> dict[str, str]:
    """Speaker -> group for every speaker of the data (see :func:`group_of`)."""
    declared = declared_groups(data)
    return {s: group_of(s, declared.get(s)) for s in speakers}
