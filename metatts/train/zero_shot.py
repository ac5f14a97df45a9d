"""Zero-shot validation: how well the speaker encoder's vector speaks voices never trained on.

For each speaker of the validation split (held out of pretraining entirely, never a test voice),
a few of its clips are encoded into one vector (:meth:`FastSpeech2.encode_speaker`, as
``synthesize --reference`` does) and the model's teacher-forced loss on its *other* clips is
measured with that vector as ``speaker.new``: no gradient step, no judge model. Reported per
voice group (natural, engine), it is the measure that decides what the training corpus holds
(e.g. ``data.exclude_groups``) without looking at the benchmark's test voices or judges.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import functional_call

from metatts.data import FeatureCache, Utterance
from metatts.data.batch import example
from metatts.model.fastspeech2 import NEW_SPEAKER, FastSpeech2
from metatts.model.losses import acoustic_loss
from metatts.train.data import collate_train


@dataclass(frozen=True)
class ZeroShotVoice:
    speaker: str
    group: str  # the manifest's voice group ("natural", "engine"), "" when it has none
    references: tuple[Tensor, ...]  # mels (n_mels, T) of the encoded clips
    batch: object  # TrainBatch of the other clips, speakers = NEW_SPEAKER


def zero_shot_voices(utterances: Sequence[Utterance], cache: FeatureCache, pitch: bool,
                     references: int = 3, targets: int = 8) -> tuple[ZeroShotVoice, ...]:
    """Per speaker of ``utterances`` (id order): the first ``references`` clips (at most all but
    one) encoded, the next ``targets`` scored. Speakers with one clip are skipped."""
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in sorted(utterances, key=lambda u: u.id):
        by_speaker[u.speaker].append(u)
    voices = []
    for speaker, clips in sorted(by_speaker.items()):
        if len(clips) < 2:
            continue
        n = min(references, len(clips) - 1)
        refs = tuple(cache.get(u).mel for u in clips[:n])
        scored = clips[n: n + targets]
        new = {speaker: NEW_SPEAKER}
        items = [(example(u, cache, new), cache.get(u).f0 if pitch else None, None)
                 for u in scored]
        voices.append(ZeroShotVoice(speaker, clips[0].group or "", refs, collate_train(items)))
    return tuple(voices)


class _Outputs(torch.nn.Module):
    """The model's teacher-forced outputs for a batch (so that functional_call can swap in a
    voice's vector)."""

    def __init__(self, model: FastSpeech2):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.outputs(batch)


def outputs_with(model: FastSpeech2, params: dict[str, Tensor], batch):
    """Teacher-forced :class:`ModelOutput` of ``batch`` with ``params`` (a voice: parameter
    name -> value, e.g. an adaptation's) in place of the model's own."""
    return functional_call(_Outputs(model), {f"model.{k}": v for k, v in params.items()},
                           (batch,), strict=False)


def with_references(model: FastSpeech2, batch, mels: Sequence[Tensor]):
    """``batch`` with ``mels`` (a voice's clips, each (n_mels, T)) as every item's references,
    for a model with reference attention (:mod:`metatts.model.reference_attention`); the batch
    as it is for any other model."""
    stacked = model.reference_clips(mels)
    if stacked is None:
        return batch
    refs, lengths = stacked
    n = batch.mels.shape[0]
    return dataclasses.replace(batch, references=refs.expand(n, -1, -1).contiguous(),
                               reference_lengths=lengths.expand(n).contiguous())


def outputs_as(model: FastSpeech2, vector: Tensor, batch):
    """Teacher-forced :class:`ModelOutput` of ``batch`` spoken with ``vector`` as speaker.new."""
    return outputs_with(model, {"speaker.new": vector}, batch)


@torch.no_grad()
def cycle(model: FastSpeech2, vector: Tensor, batch, out=None) -> float:
    """Whether the decoder renders ``vector``: the mean cosine between the speaker encoder's
    vectors of the clips the model speaks (teacher-forced, with ``vector`` as ``speaker.new``;
    ``out``: those outputs when already computed) and ``vector`` itself. Near 1 when the voice
    comes out as the encoder heard it; no judge."""
    out = outputs_as(model, vector, batch) if out is None else out
    heard = model.speaker_encoder(out.spoken, batch.mel_lengths)
    return float(torch.nn.functional.cosine_similarity(heard, vector[None], dim=1).mean())


@torch.no_grad()
def validate_zero_shot(model: FastSpeech2, voices: Sequence[ZeroShotVoice],
                       device: torch.device, binarization_weight: float = 1.0
                       ) -> dict[str, float]:
    """Loss terms averaged over the scored clips, and :func:`cycle`: overall ("mel", "total",
    "cycle", ...) and per group ("mel_natural", ...). Empty for a model without a speaker
    encoder or no voices."""
    if model.speaker_encoder is None or not voices:
        return {}
    was_training = model.training
    model.eval()
    sums: dict[tuple[str, str], float] = defaultdict(float)  # (scope, term) -> weighted sum
    counts: dict[str, int] = defaultdict(int)  # scope ("" or "_<group>") -> clips
    try:
        for voice in voices:
            vector = model.encode_speaker([m.to(device) for m in voice.references])
            batch = with_references(model, voice.batch.to(device), voice.references)
            out = outputs_as(model, vector, batch)  # one forward for the losses and cycle
            items = acoustic_loss(out, batch, model.loss_config, binarization_weight).items()
            items["cycle"] = cycle(model, vector, batch, out)
            n = len(voice.batch)
            for scope in ("", f"_{voice.group}") if voice.group else ("",):
                counts[scope] += n
                for k, v in items.items():
                    sums[scope, k] += v * n
    finally:
        model.train(was_training)
    return {k + scope: v / counts[scope] for (scope, k), v in sums.items()}
