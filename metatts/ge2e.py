"""A second speaker encoder, independent of ECAPA: resemblyzer's GE2E (Wan et al. 2018), 256-d.

The weights are ``pretrained.pt`` inside the pinned `resemblyzer` package (its file only, checked
by sha256 and loaded with ``weights_only=True``; the package's code is never imported). The forward
pass is resemblyzer 0.1.4's, written out here: 16 kHz audio, volume raised to -30 dBFS, silences
longer than ~200 ms cut by WebRTC VAD, a 40-channel mel power spectrogram (25 ms windows, 10 ms
hop; resemblyzer feeds mel power, not its log), partial utterances of 160 frames at 1.3 per
second, each through a 3-layer LSTM (256) + linear + ReLU + L2 norm; an utterance's embedding is
the L2-normed mean of its partials. It agrees with resemblyzer's own
``embed_utterance(preprocess_wav(wav))`` (tests/test_ge2e.py). Meta-TTS scored speaker
similarity with this encoder.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from metatts import assets

SAMPLE_RATE = 16000  # GE2E's input rate
N_FFT = 400  # 25 ms window
HOP_LENGTH = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s per partial utterance
PARTIALS_PER_SECOND = 1.3
MIN_COVERAGE = 0.75  # a last partial that is less than this much audio is dropped
TARGET_DBFS = -30.0  # volume is raised (never lowered) to this RMS
VAD_WINDOW = 480  # samples (30 ms) per WebRTC VAD decision
VAD_SMOOTHING = 8  # windows in the moving average of the VAD flags
VAD_MAX_SILENCE = 6  # windows of silence kept around speech
EMBED_DIM = 256
_PACKAGE = ("resemblyzer", "resemblyzer==0.1.4")
_WEIGHTS = "pretrained.pt"
SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"  # resemblyzer 0.1.4


class GE2E(nn.Module):
    """The GE2E speaker encoder: mel partials (B, PARTIAL_FRAMES, N_MELS) -> (B, EMBED_DIM)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, 256, num_layers=3, batch_first=True)
        self.linear = nn.Linear(256, EMBED_DIM)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)  # hidden: (3, B, 256)
        embeds = torch.relu(self.linear(hidden[-1]))  # (B, EMBED_DIM)
        return embeds / torch.norm(embeds, dim=1, keepdim=True)


def _bundled() -> Path:
    path = assets.package_dir(*_PACKAGE) / _WEIGHTS
    return assets.verify_sha256(path, SHA256, "GE2E speaker encoder")


@functools.cache
def load_ge2e(weights: str | None = None) -> GE2E:
    """The GE2E encoder, loaded once per process (CPU, eval mode). ``weights``: a local
    ``pretrained.pt``; by default the sha256-checked copy inside the resemblyzer package."""
    source = assets.resolve("GE2E speaker encoder", model=weights, bundled=_bundled,
                            fix=f"pip install {_PACKAGE[1]}")
    state = torch.load(source.location, map_location="cpu", weights_only=True)["model_state"]
    model = GE2E()
    # The checkpoint also holds the GE2E loss's similarity_weight/bias, unused at inference.
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})
    return model.eval()


def preprocess(wav: np.ndarray, sample_rate: int, *, trim_silences: bool = True) -> np.ndarray:
    """resemblyzer's ``preprocess_wav``: to 16 kHz (librosa's soxr_hq), volume up to -30 dBFS,
    long silences cut. (T,) float -> (T',) float32 at SAMPLE_RATE."""
    wav = np.asarray(wav, dtype=np.float32)
    if sample_rate != SAMPLE_RATE:
        import librosa

        wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=SAMPLE_RATE)
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(np.square(wav, dtype=np.float64))) + 1e-12)
    if rms_dbfs < TARGET_DBFS:
        wav = wav * np.float32(10 ** ((TARGET_DBFS - rms_dbfs) / 20))
    return _trim_long_silences(wav) if trim_silences else wav


def _trim_long_silences(wav: np.ndarray) -> np.ndarray:
    """Keep the WebRTC-VAD voiced windows (mode 3), smoothed and dilated as resemblyzer does."""
    from scipy.ndimage import binary_dilation

    with warnings.catch_warnings():  # webrtcvad 2.0.10 imports pkg_resources (setuptools<81)
        warnings.simplefilter("ignore", UserWarning)
        import webrtcvad

    wav = wav[: len(wav) - len(wav) % VAD_WINDOW]
    pcm = np.clip(np.round(wav * 32767), -32768, 32767).astype("<i2").tobytes()
    vad = webrtcvad.Vad(3)
    flags = np.array([vad.is_speech(pcm[2 * i: 2 * (i + VAD_WINDOW)], sample_rate=SAMPLE_RATE)
                      for i in range(0, len(wav), VAD_WINDOW)], dtype=np.float64)
    padded = np.concatenate([np.zeros((VAD_SMOOTHING - 1) // 2), flags,
                             np.zeros(VAD_SMOOTHING // 2)])
    sums = np.cumsum(padded)
    sums[VAD_SMOOTHING:] = sums[VAD_SMOOTHING:] - sums[:-VAD_SMOOTHING]
    mask = np.round(sums[VAD_SMOOTHING - 1:] / VAD_SMOOTHING).astype(bool)
    mask = binary_dilation(mask, np.ones(VAD_MAX_SILENCE + 1))
    return wav[np.repeat(mask, VAD_WINDOW)]


@functools.cache
def _mel_basis() -> torch.Tensor:
    """librosa's Slaney mel filterbank for 16 kHz, n_fft 400, 40 bands. (N_MELS, N_FFT // 2 + 1)"""
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS))


def mel_power(wav: np.ndarray) -> torch.Tensor:
    """Mel power spectrogram as librosa.feature.melspectrogram (centred, zero-padded, Hann).
    (T,) at 16 kHz -> (1 + T // HOP_LENGTH, N_MELS) float32"""
    x = torch.from_numpy(np.asarray(wav, dtype=np.float32))
    spec = torch.stft(x, N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT), center=True,
                      pad_mode="constant", return_complex=True).abs() ** 2  # (N_FFT//2+1, F)
    return (_mel_basis() @ spec).T.contiguous()


def partial_starts(n_samples: int) -> list[int]:
    """First mel frame of each partial utterance of a clip of ``n_samples`` (16 kHz), as
    resemblyzer's ``compute_partial_slices`` at rate 1.3 and min_coverage 0.75."""
    n_frames = int(np.ceil((n_samples + 1) / HOP_LENGTH))
    step = int(np.round(SAMPLE_RATE / PARTIALS_PER_SECOND / HOP_LENGTH))
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (n_samples - starts[-1] * HOP_LENGTH) / (PARTIAL_FRAMES * HOP_LENGTH)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


def partials(wav: np.ndarray) -> torch.Tensor:
    """A preprocessed 16 kHz clip as its mel partials. -> (P, PARTIAL_FRAMES, N_MELS)"""
    starts = partial_starts(len(wav))
    needed = (starts[-1] + PARTIAL_FRAMES) * HOP_LENGTH
    if needed >= len(wav):
        wav = np.pad(wav, (0, needed - len(wav)))
    mel = mel_power(wav)
    return torch.stack([mel[s: s + PARTIAL_FRAMES] for s in starts])


def embed_ge2e(
    wavs: np.ndarray | list[np.ndarray],
    sample_rate: int,
    *,
    trim_silences: bool = True,
    weights: str | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Unit-normalized GE2E embeddings of mono waveforms at ``sample_rate``. -> (N, 256)

    Each clip is preprocessed as resemblyzer does (``trim_silences=False`` skips its VAD cut);
    all clips' partials go through the LSTM in batches of ``batch_size``.
    """
    if isinstance(wavs, np.ndarray) and wavs.ndim == 1:
        wavs = [wavs]
    model = load_ge2e(weights)
    per_clip = [partials(preprocess(w, sample_rate, trim_silences=trim_silences)) for w in wavs]
    stacked = torch.cat(per_clip)  # (sum P, PARTIAL_FRAMES, N_MELS)
    with torch.inference_mode():
        embeds = torch.cat([model(stacked[i: i + batch_size])
                            for i in range(0, len(stacked), batch_size)])
    out = torch.empty(len(per_clip), EMBED_DIM)
    start = 0
    for i, p in enumerate(per_clip):
        out[i] = nn.functional.normalize(embeds[start: start + len(p)].mean(0), dim=0)
        start += len(p)
    return out
