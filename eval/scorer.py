"""The measurements the benchmark takes of a clip, behind one small interface (tests swap in a
cheap fake): Whisper WER and ECAPA similarity through :func:`eval.score.score_clips` (the one
scoring path), raw ECAPA embeddings for the reference rows, and DNSMOS."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eval.score import ClipScore


@dataclass(frozen=True)
class Scorer:
    asr_model: str = "base"  # Whisper model (see metatts.asr)
    speaker_model: str | None = None  # ECAPA model dir; None = the bundled spkrec-ecapa-voxceleb

    def clips(self, wavs: list[np.ndarray], sample_rate: int, texts: list[str],
              references: list[np.ndarray] | None, reference_rate: int) -> list[ClipScore]:
        """Transcript, per-utterance WER and mean ECAPA cosine to ``references`` of each clip."""
        from eval.score import score_clips

        return score_clips(wavs, sample_rate, texts, references, reference_rate=reference_rate,
                           asr_model=self.asr_model, speaker_model=self.speaker_model)

    def embed(self, wavs: list[np.ndarray], sample_rate: int) -> np.ndarray:
        """(N, 192) unit-norm ECAPA embeddings."""
        from metatts import speaker

        return speaker.embed(wavs, sample_rate, model=self.speaker_model).numpy()

    def mos(self, wavs: list[np.ndarray], sample_rate: int) -> list[float]:
        """DNSMOS P.835 OVRL of each clip (see eval.naturalness)."""
        from eval.naturalness import dnsmos

        return [n.ovrl for n in dnsmos(wavs, sample_rate)]
