"""Export the held-out (test) speakers of a built corpus as a small evaluation set.

The project ships one in ``metatts/eval_speakers/`` so that evaluation and the app have unseen
voices on a fresh machine: ``<speaker>/<id>.flac`` (22,050 Hz, 16-bit) with ``<id>.txt`` and a
``manifest.jsonl`` in the corpus format (split "test").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import soundfile as sf

from metatts.assets import atomic_path
from metatts.corpus.manifest import Clip, read_manifest, write_manifest

SHIPPED = Path(__file__).resolve().parents[1] / "eval_speakers"


def export_eval_set(corpus: str | Path, out: str | Path, per_speaker: int = 8,
                    split: str = "test") -> list[Clip]:
    """Copy the first ``per_speaker`` clips of every ``split`` speaker of ``corpus`` to ``out``
    as FLAC; replaces ``out`` atomically. Returns the exported clips."""
    chosen: list[Clip] = []
    counts: dict[str, int] = {}
    for clip in read_manifest(corpus):
        if clip.split == split and counts.get(clip.speaker, 0) < per_speaker:
            counts[clip.speaker] = counts.get(clip.speaker, 0) + 1
            chosen.append(dataclasses.replace(clip, audio=str(Path(clip.audio).with_suffix(".flac"))))
    if not chosen:
        raise ValueError(f"{corpus}: no clips in split {split!r} to export")
    with atomic_path(out) as staged:
        for clip in chosen:
            target = staged / clip.audio
            target.parent.mkdir(parents=True, exist_ok=True)
            wav, rate = sf.read(str(Path(corpus) / Path(clip.audio).with_suffix(".wav")),
                                dtype="int16")
            sf.write(str(target), wav, rate, format="FLAC", subtype="PCM_16")
            target.with_suffix(".txt").write_text(clip.text + "\n", encoding="utf-8")
        write_manifest(staged, chosen)
        (staged / "README.md").write_text(_readme(chosen), encoding="utf-8")
    return chosen


def _readme(clips: list[Clip]) -> str:
    rows = {}
    for clip in clips:
        rows.setdefault(clip.speaker, [clip.engine, clip.voice, clip.licence, 0, 0.0])
        rows[clip.speaker][3] += 1
        rows[clip.speaker][4] += clip.seconds
    lines = [
        "# Held-out evaluation speakers", "",
        ("Synthetic English speech of the corpus's test speakers (never in its train or val "
         "splits), made offline by `python -m metatts corpus --eval-set`. FLAC, 22,050 Hz, 16-bit, "
         "silence-trimmed and loudness-normalized; `<id>.txt` holds each clip's exact transcript and "
         "`manifest.jsonl` lists engine, voice, licence and split for every clip."), "",
        "| speaker | engine | voice | licence | clips | seconds |", "|---|---|---|---|---|---|",
    ]
    for speaker, (engine, voice, licence, n, seconds) in rows.items():
        lines.append(f"| {speaker} | {engine} | {voice} | {licence} | {n} | {seconds:.1f} |")
    return "\n".join(lines) + "\n"
