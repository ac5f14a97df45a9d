"""The corpus manifest: one JSON object per clip in ``ROOT/manifest.jsonl``.

Its ``id``, ``audio``, ``text``, ``speaker`` and ``split`` columns are what metatts.data's manifest
reader takes, so ``read_dataset(ROOT)`` reads the corpus with its speaker-disjoint split.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from metatts.assets import atomic_path

MANIFEST = "manifest.jsonl"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Clip:
    id: str  # file stem, unique in the corpus: "<speaker>_<index>"
    speaker: str
    engine: str
    voice: str  # the engine's voice id
    licence: str  # of the voice
    split: str  # one of SPLITS; whole speakers per split
    kind: str  # sentence kind: statement, question, command, number, name
    text: str  # exact transcript, also in <id>.txt
    audio: str  # wav path relative to the corpus root: "<speaker>/<id>.wav"
    seconds: float = 0.0  # duration after trimming; 0 until the clip is written
    group: str = "engine"  # "natural" (Kokoro's English voices and blends) or "engine"
    speed: float = 1.0  # the recipe: speaking rate, formant and pitch shift of the voice
    formant: float = 1.0
    pitch: float = 1.0


def write_manifest(root: str | Path, clips: Iterable[Clip]) -> Path:
    """Write ``ROOT/manifest.jsonl`` atomically; returns its path."""
    target = Path(root) / MANIFEST
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(dataclasses.asdict(clip), ensure_ascii=False) + "\n"
                     for clip in clips)
    return target


def read_manifest(root: str | Path) -> list[Clip]:
    """Read ``ROOT/manifest.jsonl``; raises ValueError naming the line that is not a clip."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist; build the corpus with `python -m metatts corpus --out {root}`")
    fields = {f.name for f in dataclasses.fields(Clip)}
    clips = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            unknown = set(record) - fields
            if unknown:
                raise ValueError(f"unknown fields {sorted(unknown)}")
            clips.append(Clip(**record))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}:{number}: not a clip record ({err})") from None
    return clips
