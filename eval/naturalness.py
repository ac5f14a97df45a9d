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
INPUT_SECONDS = 9.01  # speechmos.dnsmos.INPUT_LENGTH: the window DNSMOS scores
NAME = "DNSMOS P.835 OVRL (speechmos 0.0.1.1, ONNX)"


@dataclass(frozen=True)
class Naturalness:
    ovrl: float  # P.835 overall, 1-5: the "mos" of the tables
    sig: float  # P.835 speech signal
    bak: float  # P.835 background
    p808: float | None = None  # P.808 MOS, only when asked for (``dnsmos(..., p808=True)``)


@functools.cache
def _model() -> Callable:
    folder = package_dir("speechmos", "speechmos==0.0.1.1") / "dnsmos_models"
    paths = {name: verify_sha256(folder / name, digest, f"DNSMOS {name}")
             for name, digest in MODELS.items()}
    from speechmos.dnsmos import DNSMOS  # imports onnxruntime and librosa

    return DNSMOS(str(paths["sig_bak_ovr.onnx"]), str(paths["model_v8.onnx"]))


def _p835(model, x: np.ndarray) -> tuple[float, float, float]:
    """SIG, BAK, OVRL of a 16 kHz clip with the P.835 network alone, segmented as speechmos's
    ``DNSMOS.__call__`` segments (the clip repeated to at least 9.01 s, 9.01 s windows at a 1 s
    hop, the scores' polynomial mapping averaged): the same three numbers without its P.808
    network and mel spectrogram, which nothing here reads. Measured on 10 shipped clips of
    1.9-12.2 s (2 busy cores, same process, 3 rounds): 1.42-1.46 s per clip against 1.82-1.99.
    The rest is the P.835 network itself, about 0.28 s a window: a clip under 9.01 s is repeated
    past it (a 2 s clip to 16.8 s, 8 windows), as DNSMOS defines it; a batch of windows ran
    slower than one window at a time."""
    need = int(INPUT_SECONDS * RATE)
    while len(x) < need:
        x = np.append(x, x)
    hops = int(np.floor(len(x) / RATE) - INPUT_SECONDS) + 1
    scores = []
    for i in range(hops):
        window = x[int(i * RATE): int((i + INPUT_SECONDS) * RATE)]
        if len(window) < need:
            continue
        raw = model.onnx_sess.run(None, {"input_1": window[None].astype(np.float32)})[0][0]
        scores.append(model.get_polyfit_val(*raw, False))
    sig, bak, ovrl = np.mean(np.asarray(scores, dtype=np.float64), axis=0)
    return float(sig), float(bak), float(ovrl)


def dnsmos(wavs: list[np.ndarray], sample_rate: int, p808: bool = False) -> list[Naturalness]:
    """DNSMOS P.835 of each (T,) waveform at ``sample_rate``; with ``p808`` also the P.808 MOS
    (speechmos's whole ``DNSMOS.__call__``, about 1.3x the time)."""
    model = _model()
    out = []
    for wav in wavs:
        x = np.clip(audio.resample(np.asarray(wav, dtype=np.float32), sample_rate, RATE), -1, 1)
        x = x.astype(np.float32)
        if p808:
            r = model(x, RATE, False)
            out.append(Naturalness(float(r["ovrl_mos"]), float(r["sig_mos"]),
                                   float(r["bak_mos"]), float(r["p808_mos"])))
        else:
            sig, bak, ovrl = _p835(model, x)
            out.append(Naturalness(ovrl, sig, bak))
    return out
