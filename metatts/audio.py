"""Audio in and out: loading, resampling, trimming, loudness, and the vocoder's log-mel convention.

The mel settings are those of the universal HiFi-GAN V1 the project uses as its vocoder, so that
audio -> :func:`mel_spectrogram` -> vocoder gives the same voice back (copy-synthesis).
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

SAMPLE_RATE = 22050  # Hz, the acoustic model's and the vocoder's rate
N_FFT = 1024
WIN_LENGTH = 1024
HOP_LENGTH = 256  # samples per mel frame (11.6 ms)
N_MELS = 80
F_MIN = 0.0
F_MAX = 8000.0
LOG_CLAMP = 1e-5  # mel = log(clamp(melbasis @ |STFT|, LOG_CLAMP))
MAX_SECONDS = 60.0  # longer input is refused: clips for adaptation are a few seconds each
TARGET_DBFS = -23.0  # RMS loudness of normalized speech


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, silent, non-finite or too long."""


def load_audio(
    source: str | Path | bytes,
    sample_rate: int = SAMPLE_RATE,
    *,
    max_seconds: float | None = MAX_SECONDS,
) -> np.ndarray:
    """Read wav/flac/mp3/ogg from a path or bytes; return mono float32 at ``sample_rate``. (T,)"""
    name = "audio bytes" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise AudioError(f"{name}: no such file.")
    try:
        data, rate = sf.read(io.BytesIO(source) if isinstance(source, bytes) else str(source),
                             dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for bad files
        raise AudioError(
            f"{name}: cannot read it as audio ({err}). Use a wav, flac, mp3 or ogg file."
        ) from None
    if max_seconds is not None and len(data) > max_seconds * rate:
        raise AudioError(
            f"{name}: {len(data) / rate:.0f} s long; clips must be at most {max_seconds:.0f} s. "
            "Cut it into sentences first."
        )
    wav = check_audio(data.mean(axis=1), rate, name=name)
    return resample(wav, rate, sample_rate)


def check_audio(wav: np.ndarray, sample_rate: int, *, name: str = "audio") -> np.ndarray:
    """Return ``wav`` as float32 if it is usable speech input, else raise :class:`AudioError`."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise AudioError(f"{name}: expected a mono waveform, got shape {wav.shape}.")
    if wav.size < sample_rate * 0.1:
        raise AudioError(f"{name}: empty or shorter than 0.1 s.")
    if not np.isfinite(wav).all():
        raise AudioError(f"{name}: contains NaN or infinite samples.")
    if np.abs(wav).max() < 1e-4:
        raise AudioError(f"{name}: silent (peak below -80 dBFS). Check the microphone.")
    return wav


def resample(wav: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy), float32 in and out."""
    if orig_rate == new_rate:
        return np.asarray(wav, dtype=np.float32)
    g = math.gcd(int(orig_rate), int(new_rate))
    out = resample_poly(np.asarray(wav, dtype=np.float64), new_rate // g, orig_rate // g)
    return out.astype(np.float32)


def trim_silence(
    wav: np.ndarray, sample_rate: int, *, top_db: float = 40.0, pad_seconds: float = 0.05
) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``top_db`` below the loudest frame."""
    frame = max(1, int(0.02 * sample_rate))
    n = len(wav) // frame
    if n == 0:
        return wav
    rms = np.sqrt(np.mean(wav[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms / rms.max())
    voiced = np.flatnonzero(db > -top_db)
    if voiced.size == 0:
        return wav
    pad = int(pad_seconds * sample_rate)
    start = max(0, voiced[0] * frame - pad)
    end = min(len(wav), (voiced[-1] + 1) * frame + pad)
    return wav[start:end]


def normalize_loudness(wav: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Scale to ``target_dbfs`` RMS, then limit the peak to 0.99 so nothing clips."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
    if rms == 0.0:
        return wav
    out = wav * (10 ** (target_dbfs / 20) / rms)
    peak = float(np.abs(out).max())
    if peak > 0.99:
        out = out * (0.99 / peak)
    return out.astype(np.float32)


def prepare_clip(source: str | Path | bytes, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Load, trim and loudness-normalize a speech clip: the one path user clips take."""
    wav = load_audio(source, sample_rate)
    return normalize_loudness(trim_silence(wav, sample_rate))


def save_audio(path: str | Path, wav: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE):
    """Write 16-bit PCM wav (or flac by suffix)."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(np.asarray(wav, dtype=np.float32), -1, 1), sample_rate,
             subtype="PCM_16")


@functools.cache
def mel_filters(device: str = "cpu") -> torch.Tensor:
    """Slaney-style mel filterbank, as librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80,
    fmin=0, fmax=8000) that HiFi-GAN was trained with. (N_MELS, N_FFT // 2 + 1)"""
    n_freqs = N_FFT // 2 + 1
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, n_freqs)
    mel_points = np.linspace(_hz_to_mel(F_MIN), _hz_to_mel(F_MAX), N_MELS + 2)
    hz = _mel_to_hz(mel_points)
    fdiff = np.diff(hz)
    ramps = hz[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (hz[2 : N_MELS + 2] - hz[:N_MELS]))[:, None]  # slaney area norm
    return torch.from_numpy(weights.astype(np.float32)).to(device)


def _hz_to_mel(f):
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mel = f / f_sp
    log_region = f >= min_log_hz
    return np.where(log_region, min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz)
                    / logstep, mel)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_spectrogram(wav: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Log-mel spectrogram in HiFi-GAN's convention. wav (T,) or (B, T) at 22,050 Hz ->
    (N_MELS, T // HOP_LENGTH) or (B, N_MELS, T // HOP_LENGTH), natural log, float32."""
    wav = torch.as_tensor(wav, dtype=torch.float32)
    squeeze = wav.dim() == 1
    if squeeze:
        wav = wav[None]
    pad = (N_FFT - HOP_LENGTH) // 2
    wav = torch.nn.functional.pad(wav[:, None], (pad, pad), mode="reflect")[:, 0]
    spec = torch.stft(wav, N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH,
                      window=torch.hann_window(WIN_LENGTH, device=wav.device), center=False,
                      return_complex=True)
    mag = torch.sqrt(spec.real**2 + spec.imag**2 + 1e-9)  # (B, F, frames)
    mel = torch.log(torch.clamp(mel_filters(str(wav.device)) @ mag, min=LOG_CLAMP))
    return mel[0] if squeeze else mel
