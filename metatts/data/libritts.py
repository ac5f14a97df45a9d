"""LibriTTS and LibriTTS-R, which share one published layout.

``[LibriTTS/]<subset>/<speaker>/<chapter>/<speaker>_<chapter>_<para>_<sent>.wav`` with
``.normalized.txt`` and ``.original.txt`` beside each clip (e.g.
``train-clean-100/19/198/19_198_000000_000000.wav``). The root may be the corpus folder holding
subsets or one subset folder. The normalized text is used, the original where it is missing.
"""

from __future__ import annotations

from pathlib import Path

from metatts.data.readout import MISSING_AUDIO, DatasetError, DatasetReadout, ReadoutBuilder

NORMALIZED = ".normalized.txt"
ORIGINAL = ".original.txt"


def is_libritts(root: Path) -> bool:
    """True if ROOT/<speaker>/<chapter>/ or ROOT/<subset>/<speaker>/<chapter>/ holds transcripts."""
    return any(next(root.glob(pattern), None) is not None
               for pattern in (f"*/*/*{NORMALIZED}", f"*/*/*/*{NORMALIZED}"))


def read_libritts(root: str | Path) -> DatasetReadout:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder.")
    builder = ReadoutBuilder("libritts", root)
    stems = set()
    for wav in sorted(root.rglob("*.wav")):
        stems.add(wav.with_suffix(""))
        transcript = wav.with_name(wav.stem + NORMALIZED)
        if not transcript.is_file():
            transcript = wav.with_name(wav.stem + ORIGINAL)
        builder.add(wav.stem, wav.parent.parent.name, wav, transcript=transcript)
    for text in sorted(root.rglob(f"*{NORMALIZED}")):
        if text.with_name(text.name.removesuffix(NORMALIZED)) not in stems:
            builder.skip(MISSING_AUDIO, text)
    return builder.build()
