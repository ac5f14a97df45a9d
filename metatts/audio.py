"""Audio in and out: loading, resampling, trimming, loudness, and the vocoder's log-mel convention.

The mel settings are those of the universal HiFi-GAN V1 the project uses as its vocoder, so that
audio -> :func:`mel_spectrogram` -> vocoder gives the same voice back (copy-synthesis).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

from metatts.assets import atomic_path

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


OUTPUT_SUFFIXES = (".wav", ".flac")  # what save_audio writes (16-bit PCM)


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, silent, non-finite or too long."""


FFMPEG_SECONDS = 120  # longest an ffmpeg decode may take
# what browsers record (MediaRecorder) and phones save, beyond what soundfile reads itself
FFMPEG_FORMATS = "webm, opus, m4a, aac, mp4"


@dataclass(frozen=True)
class Recording:
    """A file's audio as it is stored, before mixing to mono or resampling."""

    data: np.ndarray  # (T, channels) float32 at sample_rate
    sample_rate: int
    total_seconds: float  # the whole file's length (more than was read when truncated)
    truncated: bool  # reading stopped at max_seconds

    @property
    def channels(self) -> int:
        return self.data.shape[1]

    @property
    def seconds(self) -> float:
        """Length of what was read."""
        return len(self.data) / self.sample_rate


def read_audio(source: str | Path | bytes, *, max_seconds: float | None = None) -> Recording:
    """Read an audio file or its bytes as stored: wav, flac, mp3 and ogg through soundfile, any
    other format ffmpeg knows (webm/opus as browsers record, m4a) through ffmpeg. At most
    ``max_seconds`` are read; ``truncated`` says whether there was more."""
    name = "audio bytes" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes):
        if not name:
            raise AudioError("an empty file name was given for a clip.")
        if Path(source).is_dir():
            folder = name.rstrip("/")
            raise AudioError(f"{folder} is a folder; give the audio files in it (e.g. "
                             f"{folder}/*.wav).")
        if not Path(source).is_file():
            raise AudioError(f"{name}: no such file.")
    try:
        return _read_soundfile(source, max_seconds)
    except Exception as err:  # soundfile raises several types for bad files
        first = err
    try:
        return _read_ffmpeg(source, max_seconds)
    except NoAudioTrack as err:
        raise AudioError(f"{name}: it has no audio track (only {err}), so there is no speech "
                         "in it; give a file with sound, or record the clip.") from None
    except (OSError, RuntimeError, ValueError) as err:
        raise AudioError(f"{name}: cannot read it as audio; use a wav, flac, mp3, ogg or "
                         f"{FFMPEG_FORMATS} file (what the readers said: {first}; ffmpeg: "
                         f"{err}).") from None


def _read_soundfile(source: str | Path | bytes, max_seconds: float | None) -> Recording:
    with sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as f:
        rate, frames = f.samplerate, f.frames
        limit = frames if max_seconds is None else min(frames, int(max_seconds * rate))
        data = f.read(limit, dtype="float32", always_2d=True)
    if not len(data) and frames:
        raise RuntimeError("no samples could be decoded")
    return Recording(data, rate, frames / rate, limit < frames)


def _read_ffmpeg(source: str | Path | bytes, max_seconds: float | None) -> Recording:
    """Decode with ffmpeg into a float wav, which soundfile then reads."""
    with tempfile.TemporaryDirectory(prefix="metatts-audio-") as tmp:
        if isinstance(source, bytes):
            (Path(tmp) / "in").write_bytes(source)
            source = Path(tmp) / "in"
        limit = [] if max_seconds is None else ["-t", f"{max_seconds + 0.5:.3f}"]
        out = Path(tmp) / "out.wav"
        done = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(source),
                               *limit, "-vn", "-acodec", "pcm_f32le", str(out)],
                              capture_output=True, text=True, timeout=FFMPEG_SECONDS)
        if done.returncode != 0 or not out.is_file():
            kinds = _stream_kinds(source)
            if kinds and "audio" not in kinds:
                raise NoAudioTrack(" and ".join(kinds))
            said = done.stderr.strip().splitlines()
            raise RuntimeError(said[-1].replace(str(source), "the file") if said
                               else f"exit status {done.returncode}")
        recording = _read_soundfile(out, max_seconds)
    # ffmpeg stopped half a second past the limit, so a longer file reads as truncated
    return dataclasses.replace(recording, truncated=recording.truncated or (
        max_seconds is not None and recording.total_seconds > max_seconds))


class NoAudioTrack(RuntimeError):
    """A file ffmpeg reads that holds streams, none of them audio (a video without sound);
    the message names the kinds of streams it holds."""


def _stream_kinds(path: str | Path) -> list[str]:
    """The kinds of streams ffmpeg finds in a file ("video", "audio", "subtitle", "data"), in
    order, each once; none where it cannot open it."""
    try:
        done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                              capture_output=True, text=True, timeout=FFMPEG_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return []
    kinds = re.findall(r"^\s*Stream #\d+:\d+\S*: (\w+):", done.stderr, flags=re.MULTILINE)
    return list(dict.fromkeys(k.lower() for k in kinds))


@functools.cache
def ffmpeg_exe() -> str:
    """An ffmpeg program: the one on PATH, else the static build inside ``imageio-ffmpeg``."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        raise OSError("no ffmpeg is installed (pip install imageio-ffmpeg, or apt-get install "
                      "ffmpeg)") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def to_mono(data: np.ndarray) -> np.ndarray:
    """(T, channels) -> (T,): the channels' mean, or the loudest channel where the mean would
    cancel (channels out of phase: the mix keeps under a quarter of their energy)."""
    if data.shape[1] == 1:
        return data[:, 0]
    mix = data.mean(axis=1)
    energy = np.mean(np.square(data, dtype=np.float64), axis=0)  # (channels,)
    if np.mean(np.square(mix, dtype=np.float64)) < 0.25 * energy.mean():
        return data[:, int(np.argmax(energy))]
    return mix


def load_audio(
    source: str | Path | bytes,
    sample_rate: int = SAMPLE_RATE,
    *,
    max_seconds: float | None = MAX_SECONDS,
) -> np.ndarray:
    """Read any file :func:`read_audio` reads; return mono float32 at ``sample_rate``. (T,)
    Longer than ``max_seconds`` is refused."""
    name = "audio bytes" if isinstance(source, bytes) else str(source)
    recording = read_audio(source, max_seconds=max_seconds)
    if recording.truncated:
        raise AudioError(
            f"{name}: {recording.total_seconds:.0f} s long; clips must be at most "
            f"{max_seconds:.0f} s. Cut it into sentences first."
        )
    wav = check_audio(to_mono(recording.data), recording.sample_rate, name=name)
    return resample(wav, recording.sample_rate, sample_rate)


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


def split_at_pauses(wav: np.ndarray, sample_rate: int, max_seconds: float) -> list[np.ndarray]:
    """Cut ``wav`` (T,) into as few pieces of at most ``max_seconds`` as fit, of about equal
    length, each cut in a pause: among the quietest 200 ms stretches (within 3 dB) of the
    stretch where the piece may end, the one nearest its equal share."""
    frame = max(1, int(0.02 * sample_rate))
    n = len(wav) // frame
    longest = int(max_seconds * sample_rate) // frame  # frames
    if n <= longest:
        return [wav]
    rms = np.sqrt(np.mean(wav[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    level = 20 * np.log10(np.convolve(rms, np.ones(10) / 10, mode="same"))  # (n,) dB, 200 ms
    pieces, start = [], 0
    while n - start > longest:
        share = (n - start) / math.ceil((n - start) / longest)  # frames, equal pieces
        low, high = start + int(0.6 * share), start + min(longest, int(1.4 * share))
        quiet = low + np.flatnonzero(level[low:high] <= level[low:high].min() + 3.0)
        cut = int(quiet[np.argmin(np.abs(quiet - (start + share)))])
        pieces.append(wav[start * frame : cut * frame])
        start = cut
    pieces.append(wav[start * frame :])
    return pieces


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
    """Write 16-bit PCM wav (or flac by suffix), atomically (a file it replaces stays whole if
    the write is cut off); :class:`AudioError` if it cannot be written."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise AudioError(f"{path}: audio is written as {' or '.join(OUTPUT_SUFFIXES)}; give a "
                         "file name with one of those endings.")
    try:
        with atomic_path(path) as staged:
            sf.write(str(staged), np.clip(np.asarray(wav, dtype=np.float32), -1, 1),
                     sample_rate, subtype="PCM_16")
    except (OSError, sf.LibsndfileError) as err:
        raise AudioError(f"{path}: cannot write the audio there ({err}); choose a path in a "
                         "folder you can write to.") from None


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


@functools.cache
def _mel_centers_hz() -> np.ndarray:
    """Centre frequency of each mel band of :func:`mel_filters` (N_MELS,)."""
    return _mel_to_hz(np.linspace(_hz_to_mel(F_MIN), _hz_to_mel(F_MAX), N_MELS + 2))[1:-1]


def warp_matrix(alpha: float) -> torch.Tensor:
    """(N_MELS, N_MELS) linear map of a log-mel spectrogram to the one of the same voice with every
    frequency scaled by ``alpha`` (pitch and formants together; vocal-tract-length perturbation):
    band i takes the value the spectrum had at ``centre_i / alpha``, interpolated between the two
    nearest bands in mel (clamped at the edges)."""
    if not 0.5 <= alpha <= 2.0:
        raise ValueError(f"a frequency warp factor must be in [0.5, 2], got {alpha}.")
    centres = _mel_centers_hz()
    position = np.interp(_hz_to_mel(centres / alpha), _hz_to_mel(centres), np.arange(N_MELS))
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, N_MELS - 1)
    frac = position - low
    weights = np.zeros((N_MELS, N_MELS))
    rows = np.arange(N_MELS)
    np.add.at(weights, (rows, low), 1 - frac)
    np.add.at(weights, (rows, high), frac)
    return torch.from_numpy(weights.astype(np.float32))


def warp_mel(mel: torch.Tensor, alpha: float) -> torch.Tensor:
    """Log-mel (N_MELS, T) or (B, N_MELS, T) -> the same with every frequency scaled by ``alpha``
    (see :func:`warp_matrix`); frames of silence stay silence."""
    return torch.einsum("ij,...jt->...it", warp_matrix(alpha).to(mel), mel)


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
