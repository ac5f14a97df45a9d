"""One recorded sentence: who said what, where the audio is and how long it lasts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Utterance:
    """A clip with its transcript. ``id`` is unique within a dataset; ``duration`` in seconds.

    ``split`` is the split a manifest assigned ("train", "val" or "test"), else None; ``group``
    the voice group a manifest names (the corpus builder's "natural", "engine"), else None.
    """

    id: str
    speaker: str
    text: str
    audio: Path
    duration: float
    split: str | None = None
    group: str | None = None
