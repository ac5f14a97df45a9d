"""The fast vocoder paths (onnxruntime float32, torch bfloat16) and the exact one (torch float32):
the default is a fast one, and each computes what the exact one does."""

import pytest
import torch

from metatts import audio, vocoder


@pytest.fixture(scope="module")
def mel(speech):
    """Log-mel of the first 1.5 s of a real fixture clip. (80, frames)"""
    return audio.mel_spectrogram(audio.load_audio(speech[0][1])[: int(1.5 * audio.SAMPLE_RATE)])


def test_fast_is_the_default_and_exact_stays_selectable(monkeypatch):
    monkeypatch.delenv(vocoder.MODE_ENV, raising=False)
    best = "bf16" if vocoder.native_bf16() else "fast"
    assert vocoder.default_mode() == best
    assert vocoder.load_vocoder().mode == best
    assert vocoder.load_vocoder() is vocoder.load_vocoder(mode=best)
    monkeypatch.setattr(vocoder, "native_bf16", lambda: False)
    assert vocoder.default_mode() == "fast"  # onnxruntime where bfloat16 would be emulated
    assert vocoder.load_vocoder(mode="exact").mode == "exact"
    monkeypatch.setenv(vocoder.MODE_ENV, "exact")
    assert vocoder.load_vocoder() is vocoder.load_vocoder(mode="exact")
    monkeypatch.setenv(vocoder.MODE_ENV, "quick")
    with pytest.raises(ValueError, match="fast, bf16, exact.*METATTS_VOCODER"):
        vocoder.load_vocoder()
    with pytest.raises(ValueError, match="one of fast, bf16, exact"):
        vocoder.load_vocoder(mode="int8")


def test_fast_matches_exact_on_a_real_mel(mel):
    fast, exact = vocoder.load_vocoder(mode="fast"), vocoder.load_vocoder(mode="exact")
    a, b = fast(mel), exact(mel)
    assert a.shape == b.shape == (mel.shape[-1] * audio.HOP_LENGTH,)
    assert a.dtype == torch.float32 and a.abs().max() <= 1.0
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert (a - b).pow(2).mean().sqrt() < 1e-3 * b.pow(2).mean().sqrt()  # error 60 dB down


def test_fast_batches_like_exact(mel):
    fast, exact = vocoder.load_vocoder(mode="fast"), vocoder.load_vocoder(mode="exact")
    batch = torch.stack([mel[:, :40], mel[:, 40:80]])  # (2, 80, 40)
    torch.testing.assert_close(fast(batch), exact(batch), atol=1e-4, rtol=0)
    torch.testing.assert_close(fast(batch)[1], fast(batch[1]), atol=1e-5, rtol=0)


def test_fast_refuses_bad_input_and_other_devices():
    fast = vocoder.load_vocoder(mode="fast")
    with pytest.raises(ValueError, match="transposed"):
        fast(torch.zeros(50, 80))
    with pytest.raises(ValueError, match="CPU only.*exact"):
        fast.to("cuda")
    assert fast.to("cpu") is fast and fast.device.type == "cpu"


def test_bf16_keeps_the_waveform_of_exact(mel):
    bf16, exact = vocoder.load_vocoder(mode="bf16"), vocoder.load_vocoder(mode="exact")
    a, b = bf16(mel), exact(mel)
    assert a.dtype == torch.float32 and a.shape == b.shape and a.abs().max() <= 1.0
    snr = 10 * torch.log10(b.pow(2).sum() / (a - b).pow(2).sum())
    assert snr > 12.0, f"bf16 is {float(snr):.1f} dB from exact"  # measured 18.9 dB on 15 clips
    spectrum = lambda w: torch.stft(w, 1024, 256, window=torch.hann_window(1024),  # noqa: E731
                                    return_complex=True).abs().clamp_min(1e-5).log()
    assert (spectrum(a) - spectrum(b)).abs().mean() < 0.5  # log-magnitude: same sound
