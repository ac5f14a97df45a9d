"""Naturalness predictor: DNSMOS (Microsoft, P.835 and P.808 heads) from pip ``speechmos``.

The ONNX models ship inside ``speechmos==0.0.1.1`` and run offline with onnxruntime; their sha256
is checked before loading. ``mos`` is the P.835 overall quality (OVRL, 1-5); audio is resampled to
16 kHz and clipped to [-1, 1] as DNSMOS requires. DNSMOS was trained on noisy/processed real
speech, not TTS: read it as a relative signal-quality score, not as human MOS.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from metatts import audio
from metatts.assets import package_dir, verify_sha256

RATE = 16000
MODELS = {  # file under speechmos/dnsmos_models -> sha256
    "sig_bak_ovr.onnx": "269fbebdb513aa23cddfbb593542ecc540284a91849ac50516870e1ac78f6edd",
    "model_v8.onnx": "9246480c58567bc6affd4200938e77eef49468c8bc7ed3776d109c07456f6e91",
}
NAME = "DNSMOS P.835 OVRL (speechmos 0.0.1.1, ONNX)"


@dataclass(frozen=True)
class Naturalness:
    ovrl: float  # P.835 overall, 1-5: the "mos" of the tables
    sig: float  # P.835 speech signal
    bak: float  # P.835 background
    p808: float  # P.808 MOS


@functools.cache
def _model() -> Callable:
    folder = package_dir("speechmos", "speechmos==0.0.1.1") / "dnsmos_models"
    paths = {name: verify_sha256(folder / name, digest, f"DNSMOS {name}")
             for name, digest in MODELS.items()}
    from speechmos.dnsmos import DNSMOS  # imports onnxruntime and librosa

    return DNSMOS(str(paths["sig_bak_ovr.onnx"]), str(paths["model_v8.onnx"]))


def dnsmos(wavs: list[np.ndarray], sample_rate: int) -> list[Naturalness]:
    """DNSMOS of each (T,) waveform at ``sample_rate``."""
    model = _model()
    out = []
    for wav in wavs:
        x = np.clip(audio.resample(np.asarray(wav, dtype=np.float32), sample_rate, RATE), -1, 1)
        r = model(x.astype(np.float32), RATE, False)
        out.append(Naturalness(float(r["ovrl_mos"]), float(r["sig_mos"]), float(r["bak_mos"]),
                               float(r["p808_mos"])))
    return out
