"""A manifest listing clips: JSON Lines or CSV/TSV with columns ``audio``, ``text``, ``speaker``.

Optional columns: ``id`` (default: the audio path without suffix), ``split`` ("train", "val" or
"test"; "valid", "validation" and "dev" mean "val") and ``group`` (a voice group, which
``data.exclude_groups`` can leave out of training). Other columns (engine, voice, licence, ...)
are ignored. Relative audio paths are relative to the manifest's folder.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from metatts.data.readout import MISSING_TRANSCRIPT, DatasetError, DatasetReadout, ReadoutBuilder

REQUIRED = ("audio", "text", "speaker")
MANIFEST_NAMES = ("manifest.jsonl", "manifest.csv", "manifest.tsv")
_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
                  "test": "test"}


def read_manifest(path: str | Path) -> DatasetReadout:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found.")
    builder = ReadoutBuilder("manifest", path)
    rows = _jsonl_rows(path) if path.suffix.lower() in (".jsonl", ".json") else _csv_rows(path)
    for where, row in rows:
        for column in ("audio", "speaker"):
            if not str(row.get(column) or "").strip():
                raise DatasetError(f"{where}: the {column!r} field is missing or empty.")
        audio = path.parent / str(row["audio"]).strip()  # an absolute path stays absolute
        rel = Path(str(row["audio"]).strip()).with_suffix("").as_posix()
        text = row.get("text")
        if text is None:
            builder.skip(MISSING_TRANSCRIPT, audio)
            continue
        builder.add(str(row.get("id") or rel), str(row["speaker"]).strip(), audio, text=str(text),
                    split=_split(row.get("split"), where),
                    group=str(row.get("group") or "").strip() or None)
    return builder.build()


def _split(value, where: str) -> str | None:
    value = str(value or "").strip().lower()
    if not value:
        return None
    if value not in _SPLIT_ALIASES:
        raise DatasetError(f"{where}: split {value!r} is not train, val or test.")
    return _SPLIT_ALIASES[value]


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict]]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"{where}: not valid JSON ({err.msg}). A JSONL manifest has "
                                   "one JSON object per line.") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}.")
            yield where, row


def _csv_rows(path: Path) -> Iterator[tuple[str, dict]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(
                f"{path}: the header lacks column(s) {', '.join(missing)}; a manifest needs a "
                f"header row with {', '.join(REQUIRED)} "
                f"(found: {', '.join(reader.fieldnames or [])})."
            )
        for row in reader:
            yield f"{path}:{reader.line_num}", row
