"""Warped voices: training items turned into voices no training speaker has by scaling every
frequency (mel, reference, F0) by one factor, spoken from the encoder's vector, never a table
row. The warp itself is checked on a real tone through the project's mel."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from metatts import audio
from metatts.model.config import ConfigError
from metatts.model.fastspeech2 import warp_voices
from test_speaker_encoder import TINY, v2_batch, v2_model


def tone_mel(hz: float) -> torch.Tensor:
    t = np.arange(audio.SAMPLE_RATE) / audio.SAMPLE_RATE
    return audio.mel_spectrogram(0.3 * np.sin(2 * np.pi * hz * t))


def centre_band(hz: float) -> int:
    return int(np.argmin(np.abs(audio._mel_centers_hz() - hz)))


@pytest.mark.parametrize("hz,alpha", [(300.0, 1.15), (1500.0, 0.87), (3000.0, 1.1)])
def test_a_warped_tone_peaks_where_the_scaled_tone_does(hz, alpha):
    warped = audio.warp_mel(tone_mel(hz), alpha).mean(-1)
    peak = int(warped.argmax())
    assert abs(peak - centre_band(hz * alpha)) <= 1
    assert abs(peak - int(tone_mel(hz * alpha).mean(-1).argmax())) <= 1


def test_no_warp_is_the_identity_and_silence_stays_silence():
    mel = tone_mel(440.0)
    assert torch.allclose(audio.warp_mel(mel, 1.0), mel, atol=1e-5)
    assert torch.allclose(audio.warp_matrix(1.2).sum(1), torch.ones(audio.N_MELS))
    silence = torch.full((2, audio.N_MELS, 7), math.log(audio.LOG_CLAMP))
    assert torch.allclose(audio.warp_mel(silence, 0.9), silence)
    with pytest.raises(ValueError, match="warp factor"):
        audio.warp_matrix(3.0)


def test_warp_voices_scales_the_picked_items_mel_reference_and_f0_together():
    batch = v2_batch()
    torch.manual_seed(0)
    out = warp_voices(batch, 1.0, 0.15)
    assert out.warp.shape == (4,) and bool((out.warp != 0).all())
    assert float(out.warp.abs().max()) <= 0.15
    for i, u in enumerate(out.warp.tolist()):
        assert torch.allclose(out.mels[i], audio.warp_mel(batch.mels[i], math.exp(u)), atol=1e-5)
        assert torch.allclose(out.references[i],
                              audio.warp_mel(batch.references[i], math.exp(u)), atol=1e-5)
        assert torch.allclose(out.f0[i], batch.f0[i] * math.exp(u))
        assert torch.equal(out.f0[i] == 0, batch.f0[i] == 0)  # unvoiced stays unvoiced
    assert torch.equal(out.tokens, batch.tokens) and torch.equal(out.speakers, batch.speakers)
    assert warp_voices(batch, 0.0, 0.15) is batch  # nothing drawn: the batch as it was
    torch.manual_seed(1)
    some = warp_voices(batch, 0.5, 0.15)
    kept = some.warp == 0
    assert bool(kept.any()) and bool((~kept).any())
    assert torch.equal(some.mels[kept], batch.mels[kept])


def test_warped_items_speak_from_the_encoder_and_are_not_pulled_to_their_row():
    model = v2_model(speaker_encoder_mix=0.0, warp_voices=1.0).train()
    batch = v2_batch()
    warped = dataclasses.replace(batch, warp=torch.tensor([0.1, 0.0, -0.1, 0.0]))
    encoded, rows, table, spoken = model._speaker_vectors(warped)
    assert table.tolist() == [False, True, False, True]
    assert torch.allclose(spoken[0], encoded[0]) and torch.allclose(spoken[2], encoded[2])
    assert torch.allclose(spoken[1], rows[1]) and torch.allclose(spoken[3], rows[3])
    # the pitch of a warped item is normalized around its speaker's mean shifted by the warp,
    # so a whole voice scaled in frequency keeps its normalized contour
    hard = model.outputs(batch).alignment.hard
    plain, _ = model._pitch_target(batch, hard)
    scaled = dataclasses.replace(batch, f0=batch.f0 * torch.exp(warped.warp)[:, None],
                                 warp=warped.warp)
    shifted, _ = model._pitch_target(scaled, hard)
    assert torch.allclose(plain, shifted, atol=1e-5)


def test_training_with_warped_voices_runs_and_eval_never_warps():
    model = v2_model(warp_voices=1.0)
    torch.manual_seed(2)
    loss = model.train()(v2_batch())
    assert torch.isfinite(loss.total)
    loss.total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.speaker_encoder.parameters())
    plain = v2_model()
    plain.load_state_dict(model.state_dict())
    model.eval(), plain.eval()
    with torch.no_grad():  # no warp in eval mode: the loss of the same model without it
        assert torch.allclose(model(v2_batch()).total, plain(v2_batch()).total, rtol=1e-3)
        torch.manual_seed(3)
        warped = model.train()(v2_batch()).total
        assert not torch.allclose(warped, plain.eval()(v2_batch()).total, rtol=1e-3)


def test_config_checks():
    with pytest.raises(ConfigError, match="warp_voices"):
        dataclasses.replace(TINY, warp_voices=1.5)
    with pytest.raises(ConfigError, match="warp_range"):
        dataclasses.replace(TINY, warp_range=0.9)
    with pytest.raises(ConfigError, match="needs model.speaker_encoder"):
        dataclasses.replace(TINY, warp_voices=0.3, speaker_encoder=False)
