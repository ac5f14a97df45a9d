"""Training data for pretraining: which clips, which speakers, and the order batches come in.

Speakers are split with :func:`metatts.data.split_speakers` (the validation and test speakers are
left out of pretraining, for adaptation experiments); of each training speaker a few utterances
are held out to measure validation loss. Batch order is a pure function of (seed, step), so a
resumed run sees exactly the batches the uninterrupted run would have.

For v2 models the batches are :class:`TrainBatch`: with ``f0`` (model.pitch) and, with
model.speaker_encoder, a reference clip per item: another training clip of the same speaker,
drawn by (seed, step) like the batches (:class:`WithReferences`). The per-speaker log-F0
statistics the model normalizes with are measured here (:func:`speaker_pitch_stats`).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import Tensor

from metatts.data import DatasetError, FeatureCache, FeatureSettings, Utterance, read_dataset
from metatts.data import split_speakers
from metatts.data.splits import Splits, reserve_speakers
from metatts.data.batch import Batch, Example, collate, example
from metatts.data.pitch import PitchStats
from metatts.model.config import DataConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingData:
    train: tuple[Utterance, ...]
    val: tuple[Utterance, ...]
    speakers: tuple[str, ...]  # index -> name, the model's speaker table
    frames: tuple[int, ...]  # mel frames of each training clip (for length bucketing)
    skipped: dict[str, str]  # utterance id -> why it was left out
    # clips of the validation split's speakers (never trained on), features computed: the
    # zero-shot validation's voices (metatts.train.zero_shot)
    held_out: tuple[Utterance, ...] = ()


def read_utterances(config: DataConfig) -> list[Utterance]:
    """Every dataset's usable clips not longer than ``max_seconds`` and not of a voice group in
    ``exclude_groups``."""
    utterances, excluded = [], set(config.exclude_groups)
    for source in config.datasets:
        readout = read_dataset(source)
        utterances += [u for u in readout.utterances
                       if u.duration <= config.max_seconds and u.group not in excluded]
    if not utterances:
        groups = f" outside the groups {sorted(excluded)}" if excluded else ""
        raise DatasetError(f"no clips of at most {config.max_seconds} s{groups} in "
                           f"{config.datasets}.")
    return utterances


def hold_out(utterances: Sequence[Utterance], per_speaker: int, seed: int
             ) -> tuple[list[Utterance], list[Utterance]]:
    """(train, val): ``per_speaker`` random clips of each speaker go to val; a speaker keeps at
    least one clip for training."""
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in utterances:
        by_speaker[u.speaker].append(u)
    val_ids = set()
    for speaker, clips in sorted(by_speaker.items()):
        ids = sorted(u.id for u in clips)
        random.Random(f"{seed}:{speaker}").shuffle(ids)
        val_ids.update(ids[: min(per_speaker, len(ids) - 1)])
    return ([u for u in utterances if u.id not in val_ids],
            [u for u in utterances if u.id in val_ids])


def feature_cache(config: DataConfig, run_dir: Path, pitch: bool = False) -> FeatureCache:
    """The run's feature cache; ``pitch`` (model.pitch) also stores frame F0."""
    root = Path(config.cache_dir) if config.cache_dir else run_dir / "features"
    return FeatureCache(root, FeatureSettings(tokens=config.tokens, pitch=pitch))


def pretraining_split(config: DataConfig, utterances: Sequence[Utterance]
                      ) -> tuple[Splits, tuple[Utterance, ...]]:
    """The speaker split pretraining uses, and the training clips it leaves out for
    meta-training (``config.meta_speakers``, see :func:`metatts.data.splits.reserve_speakers`)."""
    splits = split_speakers(utterances, config.val_speakers, config.test_speakers,
                            config.split_seed)
    pretrain, reserved = reserve_speakers(splits.train, config.meta_speakers, config.split_seed)
    return dataclasses.replace(splits, train=pretrain), reserved


def prepare(config: DataConfig, cache: FeatureCache) -> TrainingData:
    """Read, split, compute missing features and drop clips the model cannot use."""
    splits, reserved = pretraining_split(config, read_utterances(config))
    if not splits.train:
        raise DatasetError("no training speakers left after the speaker split; lower "
                           "data.val_speakers / data.test_speakers.")
    if reserved:
        log.info("%d training speakers reserved for meta-training (data.meta_speakers), %d "
                 "pretrain", len({u.speaker for u in reserved}),
                 len({u.speaker for u in splits.train}))
    failed = cache.warm([*splits.train, *splits.val])
    kept, frames, skipped, held_out = [], [], dict(failed), []
    train_ids = {u.id for u in splits.train}
    for u in (*splits.train, *splits.val):
        if u.id in failed:
            continue
        f = cache.get(u)
        if f.mel.shape[-1] < len(f.tokens):
            skipped[u.id] = (f"{f.mel.shape[-1]} mel frames for {len(f.tokens)} tokens: too short "
                             "to give each token a frame")
            continue
        if u.id not in train_ids:
            held_out.append(u)
            continue
        kept.append(u)
        frames.append(int(f.mel.shape[-1]))
    if skipped:
        log.warning("left out %d of %d clips (e.g. %s: %s)", len(skipped),
                    len(splits.train) + len(splits.val), *next(iter(skipped.items())))
    train, val = hold_out(kept, config.val_utterances, config.split_seed)
    length = dict(zip((u.id for u in kept), frames))
    return TrainingData(tuple(train), tuple(val), tuple(sorted({u.speaker for u in kept})),
                        tuple(length[u.id] for u in train), skipped, tuple(held_out))


class StepBatches:
    """Batch sampler over steps ``start+1 .. steps``: this process's indices for each step.

    Each epoch is a seeded permutation; within windows of 8 global batches, clips are sorted by
    length (less padding), cut into global batches of ``batch_size * world_size``, and the batch
    order shuffled; process ``rank`` takes its slice of each global batch.
    """

    def __init__(self, frames: Sequence[int], batch_size: int, seed: int, start: int, steps: int,
                 rank: int = 0, world_size: int = 1):
        self.frames, self.batch_size, self.seed = list(frames), batch_size, seed
        self.start, self.steps, self.rank, self.world = start, steps, rank, world_size
        self.global_batch = batch_size * world_size
        if len(self.frames) < self.global_batch:
            raise DatasetError(f"{len(self.frames)} training clips cannot fill one batch of "
                               f"{batch_size} x {world_size} processes; lower train.batch_size.")
        self.per_epoch = len(self.frames) // self.global_batch

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        order = torch.randperm(len(self.frames), generator=g).tolist()
        window = self.global_batch * 8
        batches = []
        for w in range(0, self.per_epoch * self.global_batch, window):
            chunk = sorted(order[w: min(w + window, self.per_epoch * self.global_batch)],
                           key=lambda i: self.frames[i])
            batches += [chunk[b: b + self.global_batch]
                        for b in range(0, len(chunk), self.global_batch)]
        shuffle = torch.randperm(len(batches), generator=g).tolist()
        return [batches[i] for i in shuffle]

    def __iter__(self) -> Iterator[list[int]]:
        epoch, cached = None, []
        for step in range(self.start, self.steps):  # step index 0-based: batch for step + 1
            e, i = divmod(step, self.per_epoch)
            if e != epoch:
                epoch, cached = e, self.epoch_batches(e)
            batch = cached[i]
            yield batch[self.rank * self.batch_size: (self.rank + 1) * self.batch_size]


def speaker_pitch_stats(utterances: Sequence[Utterance], cache: FeatureCache,
                        speakers: Sequence[str]) -> Tensor:
    """(n_speakers, 2): mean and std of each speaker's log-F0 over the voiced frames of its
    clips in ``utterances`` (the cache must hold F0)."""
    tracks: dict[str, list[Tensor]] = defaultdict(list)
    for u in utterances:
        tracks[u.speaker].append(cache.get(u).f0)
    stats = [PitchStats.of(tracks[s]) for s in speakers]
    return torch.tensor([[s.mean, s.std] for s in stats], dtype=torch.float32)


@dataclass(frozen=True)
class TrainBatch(Batch):
    """A :class:`~metatts.data.Batch` (whose ``f0`` the pitch model reads) with what the v2
    model trains on besides."""

    references: Tensor | None = None  # (B, N_MELS, T_ref) another clip of each item's speaker
    reference_lengths: Tensor | None = None  # (B,) int64
    # (B,) log of the factor each item's frequencies (mel, F0, reference) were scaled by, 0 where
    # none (metatts.model.fastspeech2.warp_voices); None: no item is warped
    warp: Tensor | None = None

    def to(self, device: str | torch.device) -> TrainBatch:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return TrainBatch(**{k: v.to(device) if isinstance(v, Tensor) else v
                             for k, v in values.items()})


def collate_train(items: Sequence[tuple[Example, Tensor | None, Tensor | None]]) -> TrainBatch:
    """(example, f0 (T,) or None, reference mel (N_MELS, T_ref) or None) triples -> TrainBatch"""
    base = collate([x for x, _, _ in items])
    values = {f.name: getattr(base, f.name) for f in fields(base) if f.name != "f0"}
    f0 = references = lengths = None
    if all(f is not None for _, f, _ in items):
        f0 = torch.zeros(base.mels.shape[0], base.mels.shape[2])
        for i, (_, f, _) in enumerate(items):
            f0[i, : len(f)] = f
    if all(r is not None for _, _, r in items):
        refs = [r for _, _, r in items]
        references = collate([Example("", 0, torch.zeros(1, dtype=torch.long), r)
                              for r in refs]).mels  # padded with silence
        lengths = torch.tensor([r.shape[-1] for r in refs], dtype=torch.long)
    return TrainBatch(**values, f0=f0, references=references, reference_lengths=lengths)


class TrainingExamples(torch.utils.data.Dataset):
    """Items are indices ``i`` or ``(i, reference index, first frame, frames)`` (a window of
    the reference clip) -> collate_train triples."""

    def __init__(self, utterances: Sequence[Utterance], cache: FeatureCache,
                 speakers: Mapping[str, int], pitch: bool):
        self.utterances, self.cache, self.speakers = list(utterances), cache, speakers
        self.pitch = pitch

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, item: int | tuple[int, int]):
        i, ref, start, frames = item if isinstance(item, tuple) else (item, None, 0, 0)
        x = example(self.utterances[i], self.cache, self.speakers)
        f0 = self.cache.get(self.utterances[i]).f0 if self.pitch else None
        mel = None
        if ref is not None:
            mel = self.cache.get(self.utterances[ref]).mel[:, start: start + frames]
        return x, f0, mel


def clips_by_speaker(speaker_of: Sequence[str]) -> dict[str, list[int]]:
    """Speaker name -> indices of its clips."""
    out: dict[str, list[int]] = defaultdict(list)
    for j, s in enumerate(speaker_of):
        out[s].append(j)
    return dict(out)


def reference_choice(clips: Sequence[int], i: int, frames: Sequence[int], crop: int,
                     g: torch.Generator) -> tuple[int, int, int, int]:
    """(i, reference, first frame, frames): one of ``clips`` (a speaker's) other than ``i`` (``i``
    if it is alone), and a window of at most ``crop`` of its ``frames[reference]`` frames, drawn
    with ``g``."""
    others = [j for j in clips if j != i]
    ref = others[int(torch.randint(len(others), (1,), generator=g))] if others else i
    spare = max(0, frames[ref] - crop)
    return i, ref, int(torch.randint(spare + 1, (1,), generator=g)), crop


class WithReferences:
    """Wraps a batch sampler over steps: each index ``i`` becomes ``(i, reference, first frame,
    frames)`` (see :func:`reference_choice`), drawn from a generator seeded by (seed, step), so
    a resumed run draws the same."""

    def __init__(self, batches: StepBatches, speaker_of: Sequence[str], seed: int, crop: int):
        self.batches, self.speaker_of, self.seed, self.crop = batches, list(speaker_of), seed, crop
        self.clips = clips_by_speaker(self.speaker_of)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step, batch in enumerate(self.batches, start=self.batches.start + 1):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
            yield [reference_choice(self.clips[self.speaker_of[i]], i, self.batches.frames,
                                    self.crop, g) for i in batch]
