"""LJSpeech 1.1: ``metadata.csv`` (``id|raw text|normalized text``, no header), ``wavs/<id>.wav``.

One speaker, "LJ". The normalized text is used (numbers and abbreviations spelled out); the raw
text where the normalized one is blank. The text contains quotes, so lines are split on "|" only.
"""

from __future__ import annotations

from pathlib import Path

from metatts.data.readout import MISSING_TRANSCRIPT, DatasetError, DatasetReadout, ReadoutBuilder

SPEAKER = "LJ"


def is_ljspeech(root: Path) -> bool:
    return (root / "metadata.csv").is_file() and (root / "wavs").is_dir()


def read_ljspeech(root: str | Path) -> DatasetReadout:
    root = Path(root)
    if not is_ljspeech(root):
        raise DatasetError(f"{root}: not LJSpeech (expected metadata.csv and wavs/).")
    builder = ReadoutBuilder("ljspeech", root)
    listed = set()
    lines = (root / "metadata.csv").read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2:
            raise DatasetError(f"{root / 'metadata.csv'}:{lineno}: expected id|text|normalized "
                               f"text, got {line[:80]!r}.")
        uid, raw, normalized = fields[0].strip(), fields[1], "|".join(fields[2:])
        listed.add(uid)
        builder.add(uid, SPEAKER, root / "wavs" / f"{uid}.wav", text=normalized.strip() or raw)
    for wav in sorted((root / "wavs").glob("*.wav")):
        if wav.stem not in listed:
            builder.skip(MISSING_TRANSCRIPT, wav)
    return builder.build()
