"""Speaker-disjoint train / validation / test splits.

A speaker's clips all land in one split, so validation and test measure adaptation to voices the
model never heard. Splits a manifest declares (its ``split`` column) are kept; the remaining
speakers are shuffled with ``seed`` and dealt out by the requested sizes.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from metatts.data.readout import DatasetError
from metatts.data.utterance import Utterance


@dataclass(frozen=True)
class Splits:
    train: tuple[Utterance, ...]
    val: tuple[Utterance, ...]
    test: tuple[Utterance, ...]

    def speakers(self, split: str) -> list[str]:
        return sorted({u.speaker for u in getattr(self, split)})


def split_speakers(
    utterances: Iterable[Utterance],
    val: float | int = 0.1,
    test: float | int = 0.1,
    seed: int = 0,
) -> Splits:
    """Deal speakers into splits. ``val``/``test`` are a fraction of the speakers without a declared
    split (a float in [0, 1]; a positive fraction gives at least one speaker) or a number of them
    (an int). Utterances keep their input order within a split."""
    utterances = list(utterances)
    declared: dict[str, set[str]] = {}
    for u in utterances:
        if u.split is not None:
            declared.setdefault(u.speaker, set()).add(u.split)
    mixed = {s: sorted(v) for s, v in declared.items() if len(v) > 1}
    if mixed:
        shown = "; ".join(f"{s}: {', '.join(v)}" for s, v in sorted(mixed.items())[:5])
        raise DatasetError(f"splits must be speaker-disjoint, but the manifest puts speakers in "
                           f"several splits ({shown}). Give each speaker one split.")
    assigned = {s: v.pop() for s, v in declared.items()}
    free = sorted({u.speaker for u in utterances} - assigned.keys())
    random.Random(seed).shuffle(free)
    n_val, n_test = _count(val, len(free), "val"), _count(test, len(free), "test")
    if n_val + n_test > len(free):
        raise DatasetError(f"cannot take {n_val} validation and {n_test} test speakers from "
                           f"{len(free)} speakers without a declared split.")
    for i, speaker in enumerate(free):
        assigned[speaker] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    parts = {name: tuple(u for u in utterances if assigned[u.speaker] == name)
             for name in ("train", "val", "test")}
    return Splits(**parts)


def reserve_speakers(utterances: Iterable[Utterance], fraction: float, seed: int = 0
                     ) -> tuple[tuple[Utterance, ...], tuple[Utterance, ...]]:
    """Training clips dealt into (pretraining, reserved): ``fraction`` of the speakers, drawn with
    ``seed``, are reserved for meta-training, so that its tasks are voices the pretrained model
    never heard, as a test voice is. 0 reserves none. Deterministic in the speaker set."""
    utterances = list(utterances)
    speakers = sorted({u.speaker for u in utterances})
    random.Random(f"reserve-{seed}").shuffle(speakers)
    n = _count(float(fraction), len(speakers), "reserved") if fraction else 0
    if n >= len(speakers) and speakers:
        raise DatasetError(f"reserving {fraction} of {len(speakers)} training speakers for "
                           "meta-training leaves none to pretrain on; lower data.meta_speakers.")
    reserved = set(speakers[:n])
    return (tuple(u for u in utterances if u.speaker not in reserved),
            tuple(u for u in utterances if u.speaker in reserved))


def _count(size: float | int, n: int, name: str) -> int:
    if isinstance(size, bool) or size < 0:
        raise DatasetError(
            f"{name} size must be a fraction in [0, 1] or a count >= 0, got {size!r}.")
    if isinstance(size, int):
        return size
    if size > 1:
        raise DatasetError(f"{name} fraction must be at most 1, got {size}.")
    return max(1, int(size * n + 0.5)) if size > 0 and n > 0 else 0
