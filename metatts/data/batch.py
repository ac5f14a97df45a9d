"""Padding examples into a batch for the acoustic model.

Masks are True at real positions. Token padding is id :data:`TOKEN_PAD` (the symbol table's pad);
mel padding is log(LOG_CLAMP), the log-mel value of silence, so a padded frame is quiet even
where a consumer forgets the mask.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import torch

from metatts.audio import LOG_CLAMP
from metatts.data.features import FeatureCache
from metatts.data.readout import DatasetError
from metatts.data.utterance import Utterance
from metatts.text.symbols import SYMBOLS

TOKEN_PAD = SYMBOLS.pad_id
MEL_PAD = math.log(LOG_CLAMP)


@dataclass(frozen=True)
class Example:
    id: str
    speaker: int  # index into the model's speaker table
    tokens: torch.Tensor  # (L,) int64
    mel: torch.Tensor  # (N_MELS, T) float32
    durations: torch.Tensor | None = None  # (L,) int64 frames per token, when aligned beforehand
    f0: torch.Tensor | None = None  # (T,) float32 Hz on the mel frames, 0 unvoiced (pitch models)
    # (L, H) the text encoder's output for these tokens, computed beforehand (see Batch)
    text_states: torch.Tensor | None = None


@dataclass(frozen=True)
class Batch:
    ids: tuple[str, ...]
    tokens: torch.Tensor  # (B, L) int64, padded with TOKEN_PAD
    token_lengths: torch.Tensor  # (B,) int64
    token_mask: torch.Tensor  # (B, L) bool, True at real tokens
    mels: torch.Tensor  # (B, N_MELS, T) float32, padded with MEL_PAD
    mel_lengths: torch.Tensor  # (B,) int64
    mel_mask: torch.Tensor  # (B, T) bool, True at real frames
    speakers: torch.Tensor  # (B,) int64
    # (B, L) int64 frames per token from an alignment computed beforehand, or None. When given,
    # the model uses it instead of running its aligner (adaptation of parameters the alignment
    # does not depend on: see metatts.adapt).
    durations: torch.Tensor | None = None
    f0: torch.Tensor | None = None  # (B, T) Hz on the mel frames, 0 unvoiced and at padding
    # (2,) mean and std of log-F0 that NEW_SPEAKER items are normalized with, when the batch is
    # one part of a larger set of the voice's clips (see split_collate); None: from this batch
    pitch_stats: torch.Tensor | None = None
    # (B, L, H) the text encoder's output, computed beforehand, or None. When given, the model
    # uses it instead of running its text encoder (adaptation of parameters the text encoder's
    # output does not depend on: see metatts.meta.support.fixed_text_states).
    text_states: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: str | torch.device) -> Batch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v
                        for k, v in moved.items()})


def speaker_index(utterances: Sequence[Utterance]) -> dict[str, int]:
    """Speaker name -> index, in sorted order: the table a multi-speaker model is built with."""
    return {s: i for i, s in enumerate(sorted({u.speaker for u in utterances}))}


def collate(items: Sequence[Example]) -> Batch:
    """Pad a list of examples (e.g. as a DataLoader ``collate_fn``)."""
    if not items:
        raise ValueError("cannot collate an empty list of examples.")
    token_lengths = torch.tensor([len(x.tokens) for x in items], dtype=torch.long)
    mel_lengths = torch.tensor([x.mel.shape[-1] for x in items], dtype=torch.long)
    n_mels = items[0].mel.shape[0]
    tokens = torch.full((len(items), int(token_lengths.max())), TOKEN_PAD, dtype=torch.long)
    mels = torch.full((len(items), n_mels, int(mel_lengths.max())), MEL_PAD)  # (B, N_MELS, T)
    for i, x in enumerate(items):
        if x.mel.shape[0] != n_mels:
            raise ValueError(f"example {x.id} has {x.mel.shape[0]} mel bins, others {n_mels}.")
        tokens[i, : len(x.tokens)] = x.tokens
        mels[i, :, : x.mel.shape[-1]] = x.mel
    return Batch(
        ids=tuple(x.id for x in items),
        tokens=tokens,
        token_lengths=token_lengths,
        token_mask=torch.arange(tokens.shape[1]) < token_lengths[:, None],
        mels=mels,
        mel_lengths=mel_lengths,
        mel_mask=torch.arange(mels.shape[2]) < mel_lengths[:, None],
        speakers=torch.tensor([x.speaker for x in items], dtype=torch.long),
        durations=(torch.nn.utils.rnn.pad_sequence([x.durations for x in items], batch_first=True)
                   if all(x.durations is not None for x in items) else None),
        f0=_padded_f0(items, mels.shape[2]) if all(x.f0 is not None for x in items) else None,
        text_states=(torch.nn.utils.rnn.pad_sequence([x.text_states for x in items],
                                                     batch_first=True)
                     if all(x.text_states is not None for x in items) else None),
    )


def _padded_f0(items: Sequence[Example], frames: int) -> torch.Tensor:
    f0 = torch.zeros(len(items), frames)
    for i, x in enumerate(items):
        f0[i, : min(len(x.f0), frames)] = x.f0[:frames]
    return f0


def example(utt: Utterance, cache: FeatureCache, speakers: Mapping[str, int]) -> Example:
    if utt.speaker not in speakers:
        raise DatasetError(f"speaker {utt.speaker!r} of {utt.id} is not in the speaker table "
                           f"({len(speakers)} speakers); map it to an index first.")
    features = cache.get(utt)
    return Example(utt.id, speakers[utt.speaker], features.tokens, features.mel)


def load_batch(utterances: Sequence[Utterance], cache: FeatureCache,
               speakers: Mapping[str, int]) -> Batch:
    """Features for ``utterances`` (e.g. an episode's support or query set), padded into a batch."""
    return collate([example(u, cache, speakers) for u in utterances])


class ExampleDataset(torch.utils.data.Dataset):
    """Map-style dataset of :class:`Example` for a DataLoader with ``collate_fn=collate``."""

    def __init__(self, utterances: Sequence[Utterance], cache: FeatureCache,
                 speakers: Mapping[str, int]):
        self.utterances, self.cache, self.speakers = list(utterances), cache, speakers

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int) -> Example:
        return example(self.utterances[i], self.cache, self.speakers)


class Parts(tuple):
    """A batch split into parts of similar length (a tuple of :class:`Batch`): the model's loss
    of the whole is pooled from the parts' (:func:`metatts.model.losses.pool`), with the same
    value and gradients as one padded batch but without most of its padding."""

    def to(self, device: str | torch.device) -> Parts:
        return Parts(b.to(device) for b in self)

    @property
    def items(self) -> int:
        """Examples in all parts (``len`` counts the parts)."""
        return sum(len(b) for b in self)


def length_groups(lengths: Sequence[int], waste: float = 0.1) -> list[list[int]]:
    """Indices grouped by length, longest first: a group grows while its padded frames stay
    within ``1 + waste`` times its real frames."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        group = groups[-1] if groups else None
        if group is not None:
            longest = lengths[group[0]]
            real = sum(lengths[j] for j in group) + lengths[i]
            if (len(group) + 1) * longest <= (1 + waste) * real:
                group.append(i)
                continue
        groups.append([i])
    return groups


def split_collate(items: Sequence[Example], waste: float = 0.1,
                  pitch_stats: torch.Tensor | None = None) -> Batch | Parts:
    """``collate(items)``, split into :class:`Parts` of similar mel length when padding one batch
    would waste more than ``waste`` of its frames. Every part carries the pitch statistics of
    all the items' NEW_SPEAKER frames, as the whole batch would compute them, so that the pooled
    loss equals the whole batch's. Used where the same set is run many times (adaptation).
    ``pitch_stats`` (2,), when given, is carried instead, by one batch too: the statistics of
    the whole voice where ``items`` are some of its clips (a held-out clip, a minibatch)."""
    from metatts.data.pitch import voice_stats
    from metatts.model.fastspeech2 import NEW_SPEAKER

    groups = length_groups([x.mel.shape[-1] for x in items], waste)
    if len(groups) == 1:
        whole = collate(items)
        return whole if pitch_stats is None else dataclasses.replace(whole,
                                                                     pitch_stats=pitch_stats)
    stats = pitch_stats
    if stats is None:
        new = [x.f0 for x in items if x.speaker == NEW_SPEAKER and x.f0 is not None]
        stats = voice_stats(torch.cat(new)) if new else None
    return Parts(dataclasses.replace(collate([items[i] for i in sorted(g)]), pitch_stats=stats)
                 for g in groups)
