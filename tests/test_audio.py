import io

import numpy as np
import pytest
import soundfile as sf
import torch

from metatts import audio
from metatts.audio import AudioError


def tone(seconds=1.0, rate=audio.SAMPLE_RATE, amp=0.3):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_load_formats_from_path_and_bytes(tmp_path, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, np.stack([tone(rate=44100), tone(rate=44100)], 1), 44100, format=fmt)
    wav = audio.load_audio(path, 16000)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 16000) < 1200  # mp3 adds encoder padding
    assert np.allclose(wav, audio.load_audio(path.read_bytes(), 16000))


def test_resample_keeps_frequency():
    out = audio.resample(tone(rate=48000), 48000, 16000)
    spectrum = np.abs(np.fft.rfft(out))
    assert len(out) == 16000 and abs(np.argmax(spectrum) - 220) <= 1


@pytest.mark.parametrize("data,message", [
    (np.zeros(22050, np.float32), "silent"),
    (np.full(22050, np.nan, np.float32), "NaN"),
    (np.zeros(100, np.float32), "shorter than 0.1 s"),
])
def test_bad_waveforms_raise_clear_errors(tmp_path, data, message):
    path = tmp_path / "bad.wav"
    sf.write(path, data, 22050, subtype="FLOAT")
    with pytest.raises(AudioError, match=message):
        audio.load_audio(path)


def test_unreadable_missing_and_long_files(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 100)
    with pytest.raises(AudioError, match="cannot read it as audio"):
        audio.load_audio(tmp_path / "junk.wav")
    with pytest.raises(AudioError, match="no such file"):
        audio.load_audio(tmp_path / "missing.wav")
    sf.write(tmp_path / "long.wav", tone(seconds=61, rate=8000), 8000)
    with pytest.raises(AudioError, match="at most 60 s"):
        audio.load_audio(tmp_path / "long.wav")


def test_trim_and_normalize():
    sr = audio.SAMPLE_RATE
    wav = np.concatenate([np.zeros(sr), tone(0.5, amp=0.05), np.zeros(sr)])
    trimmed = audio.trim_silence(wav, sr)
    assert 0.5 * sr <= len(trimmed) <= 0.65 * sr
    loud = audio.normalize_loudness(trimmed)
    rms_db = 20 * np.log10(np.sqrt(np.mean(loud**2)))
    assert abs(rms_db - audio.TARGET_DBFS) < 0.5 and np.abs(loud).max() <= 0.99


def test_mel_matches_vocoder_convention():
    wav = tone(1.0)
    mel = audio.mel_spectrogram(wav)
    assert mel.shape == (audio.N_MELS, len(wav) // audio.HOP_LENGTH)
    assert mel.min() >= np.log(audio.LOG_CLAMP) - 1e-4
    batch = audio.mel_spectrogram(torch.from_numpy(np.stack([wav, wav])))
    assert torch.allclose(batch[0], mel)
    # 220 Hz lies in the low mel bins: energy peaks there
    assert mel.mean(dim=1).argmax() < 15


def test_save_audio_roundtrip(tmp_path):
    audio.save_audio(tmp_path / "o.wav", tone())
    data, rate = sf.read(tmp_path / "o.wav")
    assert rate == audio.SAMPLE_RATE and np.allclose(data, tone(), atol=1e-4)
