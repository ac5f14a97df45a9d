"""VCTK in its published layouts.

0.92: ``wav48_silence_trimmed/p225/p225_001_mic1.flac`` (and ``_mic2``) with
``txt/p225/p225_001.txt``; 0.80: ``wav48/p225/p225_001.wav`` with the same ``txt/``.
Each sentence was recorded by two microphones; one clip per sentence is read, from ``mic``
when it exists, else from the other (p280 has no mic2). p315 has no transcripts in either
release: its clips are skipped as ``missing_transcript``.
"""

from __future__ import annotations

from pathlib import Path

from metatts.data.readout import MISSING_AUDIO, DatasetError, DatasetReadout, ReadoutBuilder

AUDIO_DIRS = ("wav48_silence_trimmed", "wav48")
MICS = ("mic1", "mic2")


def audio_dir(root: Path) -> Path | None:
    return next((root / d for d in AUDIO_DIRS if (root / d).is_dir()), None)


def is_vctk(root: Path) -> bool:
    return (root / "txt").is_dir() and audio_dir(root) is not None


def read_vctk(root: str | Path, mic: str = "mic1") -> DatasetReadout:
    root = Path(root)
    if mic not in MICS:
        raise DatasetError(f"VCTK mic must be one of {', '.join(MICS)}, got {mic!r}.")
    wav_root = audio_dir(root)
    if wav_root is None or not (root / "txt").is_dir():
        raise DatasetError(f"{root}: not VCTK (expected txt/ and {' or '.join(AUDIO_DIRS)}/).")
    builder = ReadoutBuilder("vctk", root)
    seen: set[str] = set()
    for speaker_dir in sorted(d for d in wav_root.iterdir() if d.is_dir()):
        speaker = speaker_dir.name
        for uid, clip in sorted(_clips(speaker_dir, mic).items()):
            seen.add(uid)
            builder.add(uid, speaker, clip, transcript=root / "txt" / speaker / f"{uid}.txt")
    for text in sorted((root / "txt").glob("*/*.txt")):
        if text.stem not in seen:
            builder.skip(MISSING_AUDIO, text)
    return builder.build()


def _clips(speaker_dir: Path, mic: str) -> dict[str, Path]:
    """utterance id -> the clip to read, preferring ``mic``."""
    found: dict[str, dict[str | None, Path]] = {}
    for path in speaker_dir.iterdir():
        if path.suffix == ".flac" and path.stem.rsplit("_", 1)[-1] in MICS:
            uid, which = path.stem.rsplit("_", 1)
        elif path.suffix == ".wav":
            uid, which = path.stem, None
        else:
            continue
        found.setdefault(uid, {})[which] = path
    return {uid: by_mic.get(mic) or by_mic[sorted(by_mic, key=str)[0]]
            for uid, by_mic in found.items()}
