"""Few-shot episodes: for one speaker, k support clips to adapt on and q query clips to score on.

Support and query never share a sentence (compared after :func:`text_key` folds case and drops
punctuation), so the query measures the new voice on unseen text, not recall of a support clip.
Within each set the texts are distinct too. An episode is a pure function of (seed, index).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from metatts.data.readout import DatasetError
from metatts.data.utterance import Utterance


def text_key(text: str) -> str:
    """The text as compared for disjointness: case-folded, punctuation removed, spaces collapsed."""
    kept = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text.casefold())
    return " ".join(kept.split())


@dataclass(frozen=True)
class Episode:
    speaker: str
    support: tuple[Utterance, ...]  # k clips
    query: tuple[Utterance, ...]  # q clips, no text in common with support


class EpisodeSampler:
    """Draws episodes from speakers with at least k + q distinct texts.

    A speaker with fewer is an error naming it, unless ``skip_small_speakers``; then it is left out
    and listed in ``excluded`` (speaker -> distinct texts).
    """

    def __init__(self, utterances: Iterable[Utterance], k: int, q: int, seed: int = 0, *,
                 skip_small_speakers: bool = False):
        if not (isinstance(k, int) and isinstance(q, int) and k >= 1 and q >= 1):
            raise DatasetError(f"k and q must be positive integers, got k={k!r}, q={q!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise DatasetError(f"seed must be a non-negative integer, got {seed!r}.")
        self.k, self.q, self.seed = k, q, seed
        groups: dict[str, dict[str, list[Utterance]]] = {}
        for u in utterances:
            groups.setdefault(u.speaker, {}).setdefault(text_key(u.text), []).append(u)
        small = {s: len(g) for s, g in sorted(groups.items()) if len(g) < k + q}
        if small and not skip_small_speakers:
            shown = ", ".join(f"{s} ({n})" for s, n in list(small.items())[:10])
            raise DatasetError(
                f"{len(small)} speaker(s) have fewer than k + q = {k + q} clips with distinct "
                f"texts (k={k} support, q={q} query): {shown}{' ...' if len(small) > 10 else ''}. "
                "Lower k or q, add clips, or pass skip_small_speakers=True to leave them out."
            )
        self.excluded = small
        # text key -> clips, both sorted, so episodes do not depend on the input order
        self._groups = {s: [sorted(g[t], key=lambda u: u.id) for t in sorted(g)]
                        for s, g in sorted(groups.items()) if s not in small}
        self.speakers = list(self._groups)
        if not self.speakers:
            raise DatasetError(f"no speaker has k + q = {k + q} clips with distinct texts.")

    def sample(self, index: int | np.random.Generator, speaker: str | None = None) -> Episode:
        """Episode number ``index`` (reproducible from the seed), or one drawn with a generator."""
        rng = index if isinstance(index, np.random.Generator) else self._rng(index)
        if speaker is None:
            speaker = self.speakers[int(rng.integers(len(self.speakers)))]
        elif speaker not in self._groups:
            why = (f"it has only {self.excluded[speaker]} distinct texts, k + q = {self.k + self.q}"
                   if speaker in self.excluded else "it is not in the data")
            raise DatasetError(f"cannot draw an episode for speaker {speaker!r}: {why}.")
        groups = self._groups[speaker]
        chosen = rng.choice(len(groups), self.k + self.q, replace=False)
        clips = tuple(groups[g][int(rng.integers(len(groups[g])))] for g in chosen)
        return Episode(speaker, clips[: self.k], clips[self.k :])

    def meta_batch(self, step: int, size: int) -> list[Episode]:
        """``size`` episodes for meta-training step ``step``, from distinct speakers when there are
        enough of them. Reproducible from (seed, step)."""
        rng = self._rng(step, stream=1)
        picks = rng.choice(len(self.speakers), size, replace=size > len(self.speakers))
        return [self.sample(rng, speaker=self.speakers[i]) for i in picks]

    def _rng(self, index: int, stream: int = 0) -> np.random.Generator:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise DatasetError(f"episode index must be a non-negative integer, got {index!r}.")
        return np.random.default_rng([self.seed, stream, int(index)])
