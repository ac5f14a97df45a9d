"""Export the held-out (test) speakers of a built corpus as a small evaluation set.

The project ships one in ``metatts/eval_speakers/`` so that evaluation and the app have unseen
voices on a fresh machine (the natural test voices, the engine test voices, and recorded people
added by ``python -m metatts realvoice``): ``<speaker>/<id>.flac`` (22,050 Hz, 16-bit) with ``<id>.txt`` and a
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
                    split: str = "test", group: str | None = None) -> list[Clip]:
    """Copy the first ``per_speaker`` clips of every ``split`` speaker of ``corpus`` (of ``group``
    only, when given) to ``out`` as FLAC. Each exported speaker's folder and manifest rows are
    replaced; every other speaker already in ``out`` (another group, a real voice) is kept.
    Returns the exported clips. ``split="val"`` exports the validation speakers (never trained
    on, but read for choices made without the benchmark's judges) to a folder of their own: a
    folder holding speakers of another split is refused, so that a benchmark read on it never
    mixes the two."""
    chosen: list[Clip] = []
    counts: dict[str, int] = {}
    for clip in read_manifest(corpus):
        if clip.split != split or (group is not None and clip.group != group):
            continue
        if counts.get(clip.speaker, 0) < per_speaker:
            counts[clip.speaker] = counts.get(clip.speaker, 0) + 1
            chosen.append(dataclasses.replace(clip, audio=str(Path(clip.audio).with_suffix(".flac"))))
    if not chosen:
        raise ValueError(f"{corpus}: no clips in split {split!r} to export")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kept = [c for c in read_manifest(out) if c.speaker not in counts] if (
        out / "manifest.jsonl").is_file() else []
    if other := sorted({c.split for c in kept} - {split}):
        raise ValueError(f"{out} holds speakers of split {', '.join(other)}; export the "
                         f"{split} speakers to a folder of their own")
    for speaker in counts:
        with atomic_path(out / speaker) as staged:
            staged.mkdir(parents=True)
            for clip in (c for c in chosen if c.speaker == speaker):
                target = staged / Path(clip.audio).name
                wav, rate = sf.read(str(Path(corpus) / Path(clip.audio).with_suffix(".wav")),
                                    dtype="int16")
                sf.write(str(target), wav, rate, format="FLAC", subtype="PCM_16")
                target.with_suffix(".txt").write_text(clip.text + "\n", encoding="utf-8")
    write_manifest(out, kept + chosen)
    (out / "README.md").write_text(_readme(kept + chosen), encoding="utf-8")
    return chosen


def _readme(clips: list[Clip]) -> str:
    rows = {}
    for clip in clips:
        rows.setdefault(clip.speaker, [clip.group, clip.engine, clip.voice, clip.licence, 0, 0.0])
        rows[clip.speaker][4] += 1
        rows[clip.speaker][5] += clip.seconds
    audio = ("FLAC, 22,050 Hz, 16-bit, silence-trimmed and loudness-normalized; `<id>.txt` holds "
             "each clip's exact transcript")
    if {clip.split for clip in clips} == {"val"}:
        title, intro = "Validation speakers", (
            "The corpus's validation speakers (split `val`): never trained on, but read for "
            "choices made without the benchmark's judges (the inner rate, the frame neighbours), "
            "so a benchmark read on them replicates the held-out one rather than adding to it. "
            f"Made offline by `python -m metatts corpus --eval-set DIR --eval-split val`. {audio}.")
    else:
        title, intro = "Held-out evaluation speakers", (
            "English speech of speakers that no training or validation split holds, in three "
            "groups that the benchmark reports apart: `natural` (Kokoro's test-only English "
            "voices), `real` (recorded people; see each folder's ATTRIBUTION and COPYRIGHT files) "
            "and `engine` (the previous corpus's test speakers). The synthetic ones are made "
            f"offline by `python -m metatts corpus --eval-set`. {audio} and `manifest.jsonl` "
            "lists group, engine, voice, licence and split for every clip.")
    lines = [
        f"# {title}", "", intro, "",
        "| speaker | group | engine | voice | licence | clips | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    order = {"natural": 0, "real": 1, "engine": 2}
    for speaker, (group, engine, voice, licence, n, seconds) in sorted(
            rows.items(), key=lambda kv: (order.get(kv[1][0], 3), kv[0])):
        lines.append(f"| {speaker} | {group} | {engine} | {voice} | {licence} | {n} | "
                     f"{seconds:.1f} |")
    if any(group == "real" for group, *_ in rows.values()):
        lines += ["", (
            "Recorded people (group `real`) are built by `python -m metatts realvoice`: the full "
            "group with `sudo apt-get install -y asterisk-core-sounds-en-g722 "
            "asterisk-core-sounds-en` then `python -m metatts realvoice --out data/real_voice`, "
            "and the shipped folder exported from it with `--ship metatts/eval_speakers/<speaker>`. "
            "Each folder's `COPYRIGHT` and `ATTRIBUTION.md` give the licence, the credits and the "
            "changes made; transcripts are what is said (digits as words). Evaluation only, never "
            "training data.")]
    return "\n".join(lines) + "\n"
