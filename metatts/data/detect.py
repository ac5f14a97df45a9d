"""Find out which layout a path holds, and read it.

Detection order, first match wins, from the most specific marker to the most generic:

1. ``hf:<name>[:<split>]`` is a corpus streamed from the Hugging Face hub (see ``hub.py``).
2. A file: ``metadata.csv`` beside ``wavs/`` is LJSpeech; any other ``.jsonl``/``.json``/``.csv``/
   ``.tsv`` file is a manifest.
3. A folder holding ``manifest.jsonl`` (or ``.csv``/``.tsv``) is that manifest: the corpus builder
   writes one beside its clips, and its ``split`` column must win over guessing from folders.
4. ``metadata.csv`` + ``wavs/``: LJSpeech.
5. ``txt/`` + ``wav48_silence_trimmed/`` (or ``wav48/``): VCTK.
6. ``*.normalized.txt`` two or three levels down: LibriTTS / LibriTTS-R.
7. Sub-folders holding audio: speaker folders.
8. Audio directly in the folder: one speaker's clip folder.
"""

from __future__ import annotations

from pathlib import Path

from metatts.data.folders import audio_files, read_clip_folder, read_speaker_folders, speaker_dirs
from metatts.data.hub import read_hub
from metatts.data.libritts import is_libritts, read_libritts
from metatts.data.ljspeech import is_ljspeech, read_ljspeech
from metatts.data.manifest import MANIFEST_NAMES, read_manifest
from metatts.data.readout import DatasetError, DatasetReadout
from metatts.data.vctk import is_vctk, read_vctk

HUB_PREFIX = "hf:"
MANIFEST_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")
LAYOUTS = ("manifest", "ljspeech", "vctk", "libritts", "speaker_folders", "clip_folder")
_READERS = {
    "manifest": read_manifest,
    "ljspeech": read_ljspeech,
    "vctk": read_vctk,
    "libritts": read_libritts,
    "speaker_folders": read_speaker_folders,
    "clip_folder": read_clip_folder,
}


def detect_layout(path: str | Path) -> tuple[str, Path]:
    """(layout, the path its reader takes) for a dataset folder or manifest file."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder.")
    if path.is_file():
        if path.name == "metadata.csv" and is_ljspeech(path.parent):
            return "ljspeech", path.parent
        if path.suffix.lower() in MANIFEST_SUFFIXES:
            return "manifest", path
        raise DatasetError(f"{path}: not a manifest; give a .jsonl or .csv manifest or a folder.")
    for name in MANIFEST_NAMES:
        if (path / name).is_file():
            return "manifest", path / name
    for layout, test in (("ljspeech", is_ljspeech), ("vctk", is_vctk),
                         ("libritts", is_libritts)):
        if test(path):
            return layout, path
    if any(audio_files(d) for d in speaker_dirs(path)):
        return "speaker_folders", path
    if audio_files(path):
        return "clip_folder", path
    raise DatasetError(
        f"{path}: found no dataset layout. Expected one of: <speaker>/<utt>.wav with <utt>.txt "
        "beside it; a manifest.jsonl/.csv with audio, text, speaker columns; LJSpeech "
        "(metadata.csv, wavs/); VCTK (txt/, wav48_silence_trimmed/); LibriTTS "
        "(<speaker>/<chapter>/*.wav with .normalized.txt)."
    )


def read_dataset(path: str | Path, layout: str | None = None) -> DatasetReadout:
    """Read any supported dataset; ``layout`` (one of :data:`LAYOUTS`) skips detection."""
    if isinstance(path, str) and path.startswith(HUB_PREFIX):
        name, _, split = path[len(HUB_PREFIX):].partition(":")
        return read_hub(name, split or None)
    if layout is None:
        layout, path = detect_layout(path)
    elif layout not in _READERS:
        raise DatasetError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}.")
    return _READERS[layout](path)
