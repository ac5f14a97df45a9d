"""Plain folders of clips: ``ROOT/<speaker>/<utt>.wav|flac`` with ``<utt>.txt`` beside each clip.

This is the layout for user data and evaluation sets. A folder holding clips directly
(``ROOT/<utt>.wav`` + ``<utt>.txt``) is read as one speaker named after the folder.
"""

from __future__ import annotations

from pathlib import Path

from metatts.data.readout import MISSING_AUDIO, DatasetReadout, ReadoutBuilder

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
OUTSIDE_SPEAKER_FOLDER = "outside_speaker_folder"


def audio_files(folder: Path) -> list[Path]:
    """The audio clips directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES
                  and p.is_file() and not p.name.startswith("."))


def speaker_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def read_speaker_folders(root: str | Path) -> DatasetReadout:
    """Read ``ROOT/<speaker>/<utt>.<audio>`` + ``<utt>.txt``; ids are ``<speaker>/<utt>``.

    Clips lying directly in ROOT belong to no speaker and are skipped as
    ``outside_speaker_folder``.
    """
    root = Path(root)
    builder = ReadoutBuilder("speaker_folders", root)
    for clip in audio_files(root):
        builder.skip(OUTSIDE_SPEAKER_FOLDER, clip)
    for folder in speaker_dirs(root):
        _add_clips(builder, folder, folder.name, id_prefix=f"{folder.name}/")
    return builder.build()


def read_clip_folder(root: str | Path, speaker: str | None = None) -> DatasetReadout:
    """Read ``ROOT/<utt>.<audio>`` + ``<utt>.txt`` as one speaker (default: the folder's name)."""
    root = Path(root)
    builder = ReadoutBuilder("clip_folder", root)
    _add_clips(builder, root, speaker or root.resolve().name, id_prefix="")
    return builder.build()


def _add_clips(builder: ReadoutBuilder, folder: Path, speaker: str, id_prefix: str) -> None:
    clips = audio_files(folder)
    for clip in clips:
        builder.add(id_prefix + clip.stem, speaker, clip, transcript=clip.with_suffix(".txt"))
    stems = {clip.stem for clip in clips}
    for text in sorted(folder.glob("*.txt")):
        if text.stem not in stems:
            builder.skip(MISSING_AUDIO, text)
