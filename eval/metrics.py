"""Metric definitions, stated once and used by every score, test and report.

- WER: word error rate after Whisper's English text normalizer (transformers'
  ``EnglishTextNormalizer``, here without the British-to-American spelling table, which is not
  available offline), on both reference and hypothesis; counted by jiwer. *Per-utterance* WER is
  errors / reference words of one clip; *pooled* (corpus) WER sums errors and words over clips.
- Speaker similarity (SECS): cosine of unit-normalized ECAPA (spkrec-ecapa-voxceleb) embeddings;
  a clip against several references scores the mean cosine.
"""

from __future__ import annotations

import functools

import jiwer

NORMALIZER = "Whisper EnglishTextNormalizer (transformers), no spelling map"


@functools.cache
def _normalizer():
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer({})


def normalize(text: str) -> str:
    """Whisper's English normalization: lower case, numbers and symbols standardized."""
    return " ".join(_normalizer()(text).split())


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference word count) after normalization."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        raise ValueError(f"reference text {reference!r} has no words after normalization")
    if not hyp:
        return len(ref.split()), len(ref.split())
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, len(ref.split())


def wer(reference: str, hypothesis: str) -> float:
    """Per-utterance word error rate (0 = perfect; can exceed 1 with insertions)."""
    errors, words = word_errors(reference, hypothesis)
    return errors / words


def pooled_wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER: all errors over all reference words."""
    if len(references) != len(hypotheses):
        raise ValueError("references and hypotheses differ in length")
    counts = [word_errors(r, h) for r, h in zip(references, hypotheses)]
    return sum(e for e, _ in counts) / sum(n for _, n in counts)
