"""Pitch and vocal-tract-length (formant) shifts of rendered speech: new speakers from a voice.

Praat's "Change gender" (through praat-parselmouth): PSOLA resynthesis with the spectral envelope
scaled by a formant ratio (> 1 shortens the vocal tract: a smaller, higher-sounding speaker) and
the pitch contour moved to a new median (its shape kept). It is the standard augmentation for
speaker variety; a shifted voice is heard as a different person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PITCH_FLOOR_HZ = 60.0
PITCH_CEILING_HZ = 500.0


@dataclass(frozen=True)
class Shift:
    formant: float = 1.0  # spectral-envelope scale (vocal-tract length ratio)
    pitch: float = 1.0  # factor on the clip's median F0

    @property
    def identity(self) -> bool:
        return self.formant == 1.0 and self.pitch == 1.0


def median_f0(wav: np.ndarray, sample_rate: int) -> float:
    """Median F0 (Hz) of the voiced frames of ``wav``; 0 when nothing is voiced. Uses the
    project's one F0 tracker (:func:`metatts.data.pitch.extract_f0`, Praat)."""
    from metatts.data.pitch import extract_f0

    f0 = extract_f0(np.asarray(wav, np.float32), sample_rate).numpy()
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if voiced.size else 0.0


def apply_shift(wav: np.ndarray, sample_rate: int, shift: Shift) -> np.ndarray:
    """``wav`` (float, mono) with its formants scaled and its median pitch multiplied.

    A clip with no voiced frame keeps its pitch (only the formants move)."""
    if shift.identity:
        return np.asarray(wav, np.float32)
    if not (0.5 <= shift.formant <= 2.0 and 0.5 <= shift.pitch <= 2.0):
        raise ValueError(f"shift out of range (0.5-2.0): {shift}")
    import parselmouth
    from parselmouth.praat import call

    sound = parselmouth.Sound(np.asarray(wav, np.float64), sampling_frequency=sample_rate)
    f0 = median_f0(wav, sample_rate)
    new_median = f0 * shift.pitch if f0 > 0 else 0.0  # 0: Praat keeps the pitch
    out = call(sound, "Change gender", PITCH_FLOOR_HZ, PITCH_CEILING_HZ, shift.formant,
               new_median, 1.0, 1.0)
    y = np.asarray(out.values[0], np.float32)
    peak = float(np.abs(y).max()) if y.size else 0.0
    return y / peak * 0.98 if peak > 1.0 else y
