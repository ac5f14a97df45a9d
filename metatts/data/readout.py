"""What reading a dataset gives back: the usable utterances, and every clip left out and why.

Readers never drop a clip silently. :class:`ReadoutBuilder` is the one place that decides whether a
clip is usable (a transcript that exists and is not empty, an audio file whose header soundfile can
read, with at least one frame) and files everything else under a reason in ``skipped``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from metatts.data.utterance import SPLITS, Utterance

log = logging.getLogger(__name__)

MISSING_TRANSCRIPT = "missing_transcript"
UNREADABLE_TRANSCRIPT = "unreadable_transcript"
EMPTY_TEXT = "empty_text"
MISSING_AUDIO = "missing_audio"
UNREADABLE_AUDIO = "unreadable_audio"
EMPTY_AUDIO = "empty_audio"
DUPLICATE_ID = "duplicate_id"


class DatasetError(ValueError):
    """A dataset that cannot be read at all: unknown layout, malformed manifest, bad argument."""


@dataclass(frozen=True)
class DatasetReadout:
    """The result of reading a dataset. ``skipped`` maps a reason to the files left out for it."""

    layout: str
    root: Path
    utterances: tuple[Utterance, ...]
    skipped: dict[str, list[Path]]

    @property
    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances})

    @property
    def hours(self) -> float:
        return sum(u.duration for u in self.utterances) / 3600

    def summary(self, verbose: bool = False) -> dict:
        """JSON-ready: layout, speaker and clip counts, hours, skipped counts by reason (and with
        ``verbose`` the skipped files)."""
        out = {
            "layout": self.layout,
            "speakers": len(self.speakers),
            "clips": len(self.utterances),
            "hours": round(self.hours, 4),
            "skipped": {reason: len(paths) for reason, paths in sorted(self.skipped.items())},
        }
        for key in ("group", "split"):  # where a manifest names them: the same counts per value
            values = sorted({getattr(u, key) for u in self.utterances} - {None})
            if values:
                out[f"by_{key}"] = {v: _counts([u for u in self.utterances
                                                if getattr(u, key) == v]) for v in values}
        if verbose:
            out["skipped_files"] = {reason: [str(p) for p in paths]
                                    for reason, paths in sorted(self.skipped.items())}
        return out


def _counts(utterances: list[Utterance]) -> dict:
    return {"speakers": len({u.speaker for u in utterances}), "clips": len(utterances),
            "hours": round(sum(u.duration for u in utterances) / 3600, 4)}


class ReadoutBuilder:
    """Collects clips for one dataset, checking each and recording the ones it must skip."""

    def __init__(self, layout: str, root: Path):
        self.layout, self.root = layout, Path(root)
        self._utterances: dict[str, Utterance] = {}
        self._skipped: dict[str, list[Path]] = {}

    def skip(self, reason: str, path: Path) -> None:
        self._skipped.setdefault(reason, []).append(Path(path))

    def add(
        self,
        id: str,
        speaker: str,
        audio: Path,
        *,
        text: str | None = None,
        transcript: Path | None = None,
        split: str | None = None,
        group: str | None = None,
    ) -> Utterance | None:
        """Add one clip whose text is given, or read from the ``transcript`` file.

        Returns the utterance, or None when the clip was skipped (and recorded under a reason).
        """
        if split is not None and split not in SPLITS:
            raise DatasetError(f"{audio}: split {split!r} is not one of {', '.join(SPLITS)}.")
        if text is None:
            if transcript is None or not transcript.is_file():
                self.skip(MISSING_TRANSCRIPT, audio)
                return None
            try:
                text = transcript.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                self.skip(UNREADABLE_TRANSCRIPT, transcript)
                return None
        text = " ".join(text.split())
        if not text:
            self.skip(EMPTY_TEXT, audio)
            return None
        if not audio.is_file():
            self.skip(MISSING_AUDIO, audio)
            return None
        try:
            info = sf.info(str(audio))  # reads the header only
        except Exception:  # soundfile raises several types for files it cannot parse
            self.skip(UNREADABLE_AUDIO, audio)
            return None
        if info.frames <= 0 or info.samplerate <= 0:
            self.skip(EMPTY_AUDIO, audio)
            return None
        if id in self._utterances:
            self.skip(DUPLICATE_ID, audio)
            return None
        utt = Utterance(id, speaker, text, audio, info.frames / info.samplerate, split,
                        group)
        self._utterances[id] = utt
        return utt

    def build(self) -> DatasetReadout:
        readout = DatasetReadout(self.layout, self.root, tuple(self._utterances.values()),
                                 {reason: list(paths) for reason, paths in self._skipped.items()})
        if readout.skipped:
            counts = ", ".join(f"{len(p)} {reason}" for reason, p in readout.skipped.items())
            log.warning("%s (%s): skipped %s", self.root, self.layout, counts)
        return readout
