"""Text to speech: the acoustic model makes a mel per sentence, the vocoder turns it into audio.

A voice is either a speaker of the checkpoint (by name or index) or a dict of adapted parameter
tensors (from the adaptation code) that override the model's own for the call, through
``torch.func.functional_call``; the model itself is never modified. A dict that holds
``speaker.new`` speaks with that vector (speaker index NEW_SPEAKER) unless a speaker is named.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from metatts.audio import SAMPLE_RATE
from metatts.model.checkpoint import Checkpoint, CheckpointError
from metatts.model.fastspeech2 import NEW_SPEAKER, FastSpeech2, Prediction
from metatts.postfilter import apply as apply_postfilter
from metatts.text import split_sentences, text_to_ids

PAUSE_SECONDS = 0.25  # silence between sentences
MAX_SENTENCE_CHARS = 250  # longer sentences are cut at clause marks or spaces


@dataclass(frozen=True)
class Synthesis:
    wav: np.ndarray  # (samples,) float32 in [-1, 1] at sample_rate
    sample_rate: int
    mels: tuple[Tensor, ...]  # one (n_mels, frames) log-mel per sentence
    sentences: tuple[str, ...]
    acoustic_seconds: float  # wall-clock time of text front end + acoustic model
    vocoder_seconds: float

    @property
    def seconds(self) -> float:
        """Length of the audio in seconds."""
        return len(self.wav) / self.sample_rate

    @property
    def rtf(self) -> float:
        """Real-time factor: compute seconds per second of audio (acoustic model + vocoder)."""
        return (self.acoustic_seconds + self.vocoder_seconds) / self.seconds

    @property
    def acoustic_rtf(self) -> float:
        return self.acoustic_seconds / self.seconds


class _Infer(nn.Module):
    """``model.infer`` as a module call, so that functional_call can swap parameters."""

    def __init__(self, model: FastSpeech2):
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, lengths: Tensor, speakers: Tensor, pace: float) -> Prediction:
        return self.model.infer(tokens, lengths, speakers, pace)


def check_params(model: nn.Module, params: Mapping[str, Tensor]) -> None:
    """Every override must name a model parameter and have its shape."""
    own = dict(model.named_parameters())
    unknown = sorted(set(params) - set(own))
    if unknown:
        raise CheckpointError(f"the voice names parameters this model does not have: "
                              f"{unknown[:5]}; was it adapted from a different checkpoint?")
    wrong = [k for k, v in params.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise CheckpointError(f"the voice's tensors do not fit this model ({wrong[:5]}: shapes "
                              "differ); was it adapted from a different checkpoint?")


def resolve_speaker(checkpoint: Checkpoint, params: Mapping[str, Tensor] | None,
                    speaker: str | int | None) -> int:
    if speaker is not None:
        return checkpoint.speaker_id(speaker)
    if params is not None and "speaker.new" in params:
        return NEW_SPEAKER
    if len(checkpoint.speakers) == 1:
        return 0
    names = ", ".join(checkpoint.speakers[:10]) + (" ..." if len(checkpoint.speakers) > 10 else "")
    raise CheckpointError(f"choose a voice: a speaker name (one of {names}) or adapted "
                          "parameters holding 'speaker.new'.")


def synthesize(checkpoint: Checkpoint, text: str, params: Mapping[str, Tensor] | None = None,
               speaker: str | int | None = None, *, pace: float = 1.0,
               vocoder: Callable[[Tensor], Tensor] | None = None,
               postfilter: bool = True) -> Synthesis:
    """Speak ``text``. Long text is split into sentences, synthesized as one batch and joined
    with short pauses. Raises :class:`metatts.text.TextError` for empty or unspeakable text.
    ``vocoder`` maps a (n_mels, T) mel to a waveform; default: the bundled HiFi-GAN.
    ``postfilter``: apply the checkpoint's mel post-filter (:mod:`metatts.postfilter`; a no-op
    when its config leaves it off)."""
    if not pace > 0:
        raise ValueError(f"pace must be positive, got {pace}.")
    model = checkpoint.model
    device = next(model.parameters()).device
    if params is not None:
        check_params(model, params)
        params = {k: v.to(device) for k, v in params.items()}
    index = resolve_speaker(checkpoint, params, speaker)
    started = time.perf_counter()
    sentences = split_sentences(text, max_chars=MAX_SENTENCE_CHARS)
    mode = checkpoint.config.data.tokens
    ids = [torch.tensor(text_to_ids(s, mode=mode, table=checkpoint.symbols)) for s in sentences]
    lengths = torch.tensor([len(x) for x in ids], device=device)
    tokens = nn.utils.rnn.pad_sequence(ids, batch_first=True).to(device)  # (S, N), pad id 0
    speakers = torch.full((len(ids),), index, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if params is None:
                pred = model.infer(tokens, lengths, speakers, pace)
            else:
                pred = torch.func.functional_call(
                    _Infer(model), {f"model.{k}": v for k, v in params.items()},
                    (tokens, lengths, speakers, pace), strict=False)
    finally:
        model.train(was_training)
    mels = tuple(pred.mel[i, :, : int(n)].float().cpu() for i, n in enumerate(pred.mel_lengths))
    if postfilter and checkpoint.config.postfilter.active:
        mels = tuple(apply_postfilter(m, checkpoint.config.postfilter) for m in mels)
    acoustic = time.perf_counter() - started
    if vocoder is None:  # loaded (once per process) outside the timing
        from metatts.vocoder import load_vocoder

        vocoder = load_vocoder()
    started = time.perf_counter()
    pause = np.zeros(int(PAUSE_SECONDS * SAMPLE_RATE), dtype=np.float32)
    pieces = []
    for i, mel in enumerate(mels):
        if i:
            pieces.append(pause)
        pieces.append(vocoder(mel).detach().float().cpu().numpy())
    wav = np.clip(np.concatenate(pieces), -1.0, 1.0).astype(np.float32)
    return Synthesis(wav, SAMPLE_RATE, mels, tuple(sentences), acoustic,
                     time.perf_counter() - started)
