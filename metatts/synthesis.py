"""Text to speech: the acoustic model makes a mel per sentence, the vocoder turns it into audio.

Text of any length is split into sentences; each sentence is spoken on its own (acoustic model,
post-filter, vocoder), its audio faded in and out over FADE_SECONDS so that it starts and ends at
zero, and sentences are joined with PAUSE_SECONDS of silence: no clicks at the joins.
:func:`synthesize_stream` yields the audio a few sentences at a time as it is made;
:func:`synthesize` is the same stream joined, so the two give the same samples.

A voice is either a speaker of the checkpoint (by name or index) or a dict of adapted parameter
tensors (from the adaptation code) that override the model's own for the call, through
``torch.func.functional_call``; the model itself is never modified. A dict that holds
``speaker.new`` speaks with that vector (speaker index NEW_SPEAKER) unless a speaker is named.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from metatts.audio import SAMPLE_RATE
from metatts.frames import FrameBank, hidden_states
from metatts.model.checkpoint import Checkpoint, CheckpointError
from metatts.model.config import PostFilterConfig
from metatts.model.fastspeech2 import NEW_SPEAKER, FastSpeech2, Prediction
from metatts.postfilter import apply as apply_postfilter
from metatts.text import TextError, split_sentences, text_to_ids

PAUSE_SECONDS = 0.25  # silence between sentences
FADE_SECONDS = 0.005  # raised-cosine fade at both ends of each sentence's audio
# speaking rates allowed: at 4x most sounds last one frame; below 0.25 a sentence's mel grows
# past what the vocoder should be asked to make
PACE_RANGE = (0.25, 4.0)
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

    def forward(self, tokens: Tensor, lengths: Tensor, speakers: Tensor, pace: float,
                references: tuple[Tensor, Tensor] | None = None) -> Prediction:
        return self.model.infer(tokens, lengths, speakers, pace, references=references)


def check_params(model: nn.Module, params: Mapping[str, Tensor]) -> None:
    """Every override must name a model parameter (or buffer, e.g. ``speaker.timing``) and have
    its shape."""
    own = {**dict(model.named_buffers()), **dict(model.named_parameters())}
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
               postfilter: bool = True, references: Sequence[Tensor] | None = None,
               frames: FrameBank | None = None) -> Synthesis:
    """Speak ``text``. Long text is split into sentences, each synthesized and joined with short
    pauses (see the module docstring). Raises :class:`metatts.text.TextError` for empty or
    unspeakable text. ``vocoder`` maps a (n_mels, T) mel to a waveform; default: the bundled
    HiFi-GAN (:func:`metatts.vocoder.load_vocoder`, its fast path unless $METATTS_VOCODER=exact).
    ``postfilter``: apply the checkpoint's mel post-filter (:mod:`metatts.postfilter`; a no-op
    when its config leaves it off). ``references``: log-mels (n_mels, T) of the voice's clips,
    read frame by frame by a model with reference attention
    (:mod:`metatts.model.reference_attention`); ignored by any other model. ``frames``: the
    voice's :class:`~metatts.frames.FrameBank`, whose real frames correct each frame the model
    makes (in place of the post-filter; :mod:`metatts.frames`)."""
    chunks = list(synthesize_stream(checkpoint, text, params, speaker, pace=pace,
                                    vocoder=vocoder, postfilter=postfilter,
                                    references=references, frames=frames))
    return Synthesis(np.concatenate([c.wav for c in chunks]), SAMPLE_RATE,
                     tuple(m for c in chunks for m in c.mels),
                     tuple(s for c in chunks for s in c.sentences),
                     sum(c.acoustic_seconds for c in chunks), sum(c.vocoder_seconds for c in chunks))


def synthesize_stream(checkpoint: Checkpoint, text: str,
                      params: Mapping[str, Tensor] | None = None,
                      speaker: str | int | None = None, *, pace: float = 1.0,
                      vocoder: Callable[[Tensor], Tensor] | None = None, postfilter: bool = True,
                      chunk_sentences: int = 1, references: Sequence[Tensor] | None = None,
                      frames: FrameBank | None = None) -> Iterator[Synthesis]:
    """Speak ``text`` ``chunk_sentences`` sentences at a time: one :class:`Synthesis` per chunk,
    made when it is asked for. The chunks' wavs concatenated are :func:`synthesize`'s wav for any
    ``chunk_sentences`` (every chunk but the last ends with the pause before the next sentence).
    Arguments as for :func:`synthesize`; bad text or a bad voice raises here, before the first
    chunk is made."""
    check_pace(pace)
    if chunk_sentences < 1:
        raise ValueError(f"chunk_sentences must be at least 1, got {chunk_sentences}.")
    model = checkpoint.model
    device = next(model.parameters()).device
    if params is not None:
        check_params(model, params)
        params = {k: v.to(device) for k, v in params.items()}
    index = resolve_speaker(checkpoint, params, speaker)
    sentences, ids = speakable_sentences(text, checkpoint)
    if vocoder is None:  # loaded (once per process) before any timing
        from metatts.vocoder import load_vocoder

        vocoder = load_vocoder()
    pf = checkpoint.config.postfilter if postfilter and checkpoint.config.postfilter.active else None
    if frames is not None:  # the voice's real frames bring the detail the post-filter adds
        if frames.twin.shape[1] != model.config.n_mels:
            raise CheckpointError(f"the voice's frames have {frames.twin.shape[1]} mel bins and "
                                  f"this model {model.config.n_mels}; was it made for another "
                                  "checkpoint?")
        if frames.keys is not None and frames.keys.shape[1] != model.config.hidden:
            raise CheckpointError(f"the voice's frames match on {frames.keys.shape[1]}-wide "
                                  f"decoder states and this model's are {model.config.hidden} "
                                  "wide; was it made for another checkpoint?")
        pf = None
    return _stream(checkpoint.model, params, index, sentences, ids, pace, vocoder, pf,
                   chunk_sentences, model.reference_clips(references or []), frames)


def check_pace(pace: float) -> None:
    """:class:`ValueError` unless ``pace`` is in :data:`PACE_RANGE`."""
    if not PACE_RANGE[0] <= pace <= PACE_RANGE[1]:
        raise ValueError(f"pace must be between {PACE_RANGE[0]:g} and {PACE_RANGE[1]:g} (1 is the "
                         f"model's own rate, 2 twice as fast), got {pace:g}.")


def speakable_sentences(text: str, checkpoint: Checkpoint) -> tuple[list[str], list[list[int]]]:
    """``text``'s sentences and their symbol ids, leaving out a sentence with nothing the model
    can say (e.g. one in another script, "日本語。"; :func:`metatts.text.dropped_letters` names
    what was left out); :class:`TextError` when no sentence is left."""
    sentences, ids, first_error = [], [], None
    for sentence in split_sentences(text, max_chars=MAX_SENTENCE_CHARS):
        try:
            ids.append(text_to_ids(sentence, mode=checkpoint.config.data.tokens,
                                   table=checkpoint.symbols))
        except TextError as err:
            first_error = first_error or err
            continue
        sentences.append(sentence)
    if not sentences:
        raise first_error
    return sentences, ids


def _stream(model: FastSpeech2, params: dict[str, Tensor] | None, speaker: int,
            sentences: list[str], ids: list[list[int]], pace: float,
            vocoder: Callable[[Tensor], Tensor], postfilter: PostFilterConfig | None,
            chunk_sentences: int, references: tuple[Tensor, Tensor] | None = None,
            frames: FrameBank | None = None) -> Iterator[Synthesis]:
    pause = np.zeros(int(PAUSE_SECONDS * SAMPLE_RATE), dtype=np.float32)
    for first in range(0, len(sentences), chunk_sentences):
        last = min(first + chunk_sentences, len(sentences))
        pieces, mels, acoustic, vocoding = [], [], 0.0, 0.0
        for i in range(first, last):
            started = time.perf_counter()
            on_states = frames is not None and frames.keys is not None  # matches on them
            with hidden_states(model) if on_states else contextlib.nullcontext() as seen:
                mel = _mel(model, params, speaker, ids[i], pace, references)
            if frames is not None:
                mel = frames.apply(mel, seen[0][0, : mel.shape[1]] if on_states else None)
            elif postfilter is not None:
                mel = apply_postfilter(mel, postfilter)
            acoustic += time.perf_counter() - started
            started = time.perf_counter()
            wav = vocoder(mel).detach().float().cpu().numpy()
            pieces.append(fade(np.clip(wav, -1.0, 1.0).astype(np.float32)))
            vocoding += time.perf_counter() - started
            mels.append(mel)
            if i + 1 < len(sentences):
                pieces.append(pause)
        yield Synthesis(np.concatenate(pieces), SAMPLE_RATE, tuple(mels),
                        tuple(sentences[first:last]), acoustic, vocoding)


def _mel(model: FastSpeech2, params: dict[str, Tensor] | None, speaker: int, ids: list[int],
         pace: float, references: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """One sentence's token ids -> its (n_mels, frames) log-mel on CPU."""
    device = next(model.parameters()).device
    tokens = torch.tensor([ids], device=device)  # (1, N)
    lengths = torch.tensor([len(ids)], device=device)
    speakers = torch.tensor([speaker], device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if params is None:
                pred = model.infer(tokens, lengths, speakers, pace, references=references)
            else:
                pred = torch.func.functional_call(
                    _Infer(model), {f"model.{k}": v for k, v in params.items()},
                    (tokens, lengths, speakers, pace, references), strict=False)
    finally:
        model.train(was_training)
    return pred.mel[0, :, : int(pred.mel_lengths[0])].float().cpu()


def fade(wav: np.ndarray, seconds: float = FADE_SECONDS) -> np.ndarray:
    """``wav`` (samples,) with a raised-cosine fade-in and fade-out of ``seconds`` each, so that it
    starts and ends at zero (a copy)."""
    n = min(int(seconds * SAMPLE_RATE), len(wav) // 2)
    ramp = (0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)).astype(np.float32)  # 0 -> ~1
    out = wav.copy()
    out[:n] *= ramp
    out[len(out) - n:] *= ramp[::-1]
    return out
