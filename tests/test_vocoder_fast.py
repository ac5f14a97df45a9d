"""The fast vocoder path (onnxruntime) is the default and computes what the exact one (torch) does."""

import pytest
import torch

from metatts import audio, vocoder
from metatts.assets import AssetError


@pytest.fixture(scope="module")
def mel(speech):
    """Log-mel of the first 1.5 s of a real fixture clip. (80, frames)"""
    return audio.mel_spectrogram(audio.load_audio(speech[0][1])[: int(1.5 * audio.SAMPLE_RATE)])


def test_fast_is_the_default_and_exact_stays_selectable(monkeypatch):
    monkeypatch.delenv(vocoder.MODE_ENV, raising=False)
    assert vocoder.load_vocoder().mode == "fast"
    assert vocoder.load_vocoder() is vocoder.load_vocoder(mode="fast")
    assert vocoder.load_vocoder(mode="exact").mode == "exact"
    monkeypatch.setenv(vocoder.MODE_ENV, "exact")
    assert vocoder.load_vocoder() is vocoder.load_vocoder(mode="exact")
    monkeypatch.setenv(vocoder.MODE_ENV, "quick")
    with pytest.raises(ValueError, match="fast, exact.*METATTS_VOCODER"):
        vocoder.load_vocoder()
    with pytest.raises(ValueError, match="one of fast, exact"):
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


def test_sha_mismatch_raises_before_the_fast_path_exports(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("exported unverified weights")

    monkeypatch.setattr(vocoder, "BUNDLED_SHA256", "0" * 64)
    monkeypatch.setattr(vocoder, "export_onnx", refuse)
    with pytest.raises(AssetError, match="sha256"):
        vocoder._load_vocoder.__wrapped__(None, "fast")
