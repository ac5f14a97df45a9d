"""Score synthesized (or real) speech: Whisper transcript and WER, ECAPA similarity to references.

This is the one scoring path: ``python -m eval score``, the benchmark tables and the app use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from eval import metrics
from metatts import asr, speaker


def mean_cosine(embeddings: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Speaker similarity of each clip: its mean cosine to the reference clips, whatever the
    encoder. (N, D) x (M, D) -> (N,)"""
    a = embeddings / np.linalg.norm(embeddings, axis=-1, keepdims=True)
    b = references / np.linalg.norm(references, axis=-1, keepdims=True)
    return (a @ b.T).mean(axis=1)


@dataclass
class ClipScore:
    transcript: str
    wer: float  # per-utterance WER, see eval.metrics
    secs: float | None  # mean ECAPA cosine to the reference clips; None without references

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def score_clips(
    wavs: list[np.ndarray],
    sample_rate: int,
    texts: list[str],
    references: list[np.ndarray] | None = None,
    *,
    reference_rate: int | None = None,
    asr_model: str = "base",
    speaker_model: str | None = None,
) -> list[ClipScore]:
    """Transcribe ``wavs`` (batched) and score each against its text and the reference clips."""
    if len(wavs) != len(texts):
        raise ValueError(f"{len(wavs)} clips but {len(texts)} texts")
    transcripts = asr.transcribe(wavs, sample_rate, model=asr_model)
    secs: list[float | None] = [None] * len(wavs)
    if references:
        ref = speaker.embed(references, reference_rate or sample_rate, model=speaker_model)
        emb = speaker.embed(wavs, sample_rate, model=speaker_model)
        secs = mean_cosine(emb.numpy(), ref.numpy()).tolist()
    return [ClipScore(t, metrics.wer(text, t), s) for t, text, s in zip(transcripts, texts, secs)]
