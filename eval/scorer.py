"""The judges the benchmark asks about a clip, behind one small interface (tests swap in a cheap
fake): Whisper transcripts, ECAPA embeddings, GE2E embeddings (a second, independent speaker
encoder, where ``metatts.ge2e`` is installed) and DNSMOS. Each judge is loaded once per process
(cached by its module) and sees whole batches of clips.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

GE2E_NAME = "GE2E (resemblyzer, 256-d)"
ECAPA_NAME = "ECAPA spkrec-ecapa-voxceleb (192-d)"


@functools.cache
def second_judge() -> tuple[Callable | None, str]:
    """(``metatts.ge2e.embed_ge2e``, "") when that module is present and its encoder loads,
    else (None, a sentence saying why the GE2E column is "n/a")."""
    if importlib.util.find_spec("metatts.ge2e") is None:
        return None, "metatts/ge2e.py is not in this checkout"
    try:
        from metatts import ge2e

        ge2e.load_ge2e()
    except Exception as err:  # any failure to load leaves the column empty, said in the report
        return None, f"the GE2E encoder did not load ({type(err).__name__}: {err})"
    return ge2e.embed_ge2e, ""


@dataclass(frozen=True)
class Measured:
    """What the judges say of one clip."""

    transcript: str
    ecapa: np.ndarray  # (192,) unit-norm ECAPA embedding
    ge2e: np.ndarray | None  # (256,) GE2E embedding; None when GE2E is not available
    mos: float  # DNSMOS P.835 OVRL


@dataclass(frozen=True)
class Scorer:
    asr_model: str = "base"  # Whisper model (see metatts.asr)
    speaker_model: str | None = None  # ECAPA model dir; None = the bundled spkrec-ecapa-voxceleb
    ge2e: bool = True  # use GE2E when it is available

    def transcribe(self, wavs: list[np.ndarray], sample_rate: int) -> list[str]:
        """Greedy Whisper transcripts, batched."""
        from metatts import asr

        return asr.transcribe(wavs, sample_rate, model=self.asr_model)

    def embed(self, wavs: list[np.ndarray], sample_rate: int) -> np.ndarray:
        """(N, 192) unit-norm ECAPA embeddings."""
        from metatts import speaker

        return speaker.embed(wavs, sample_rate, model=self.speaker_model).numpy()

    def ge2e_missing(self) -> str:
        """"" when GE2E similarity is measured, else why not."""
        return "turned off" if not self.ge2e else second_judge()[1]

    def embed_ge2e(self, wavs: list[np.ndarray], sample_rate: int) -> np.ndarray | None:
        """(N, 256) GE2E embeddings, or None when GE2E is not available."""
        embed = second_judge()[0] if self.ge2e else None
        if embed is None:
            return None
        return np.asarray(embed(list(wavs), sample_rate), dtype=np.float32)

    def mos(self, wavs: list[np.ndarray], sample_rate: int) -> list[float]:
        """DNSMOS P.835 OVRL of each clip (see eval.naturalness)."""
        from eval.naturalness import dnsmos

        return [n.ovrl for n in dnsmos(wavs, sample_rate)]

    def measure(self, wavs: list[np.ndarray], sample_rate: int) -> list[Measured]:
        """Every judge on a batch of clips."""
        if not wavs:
            return []
        texts = self.transcribe(wavs, sample_rate)
        ecapa = self.embed(wavs, sample_rate)
        ge2e = self.embed_ge2e(wavs, sample_rate)
        mos = self.mos(wavs, sample_rate)
        return [Measured(t, ecapa[i], None if ge2e is None else ge2e[i], mos[i])
                for i, t in enumerate(texts)]
