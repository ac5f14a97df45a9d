import dataclasses
import math

import numpy as np
import pytest
import torch

from metatts import audio
from metatts.data import Example, FeatureCache, FeatureSettings, Utterance
from metatts.data.pitch import PitchStats, extract_f0, frame_count, normalize, token_pitch
from metatts.model.aligner import durations_to_alignment
from metatts.model.config import ModelConfig
from metatts.model.fastspeech2 import NEW_SPEAKER, FastSpeech2
from metatts.text import SYMBOLS
from metatts.train.data import collate_train

SR = audio.SAMPLE_RATE
TINY = ModelConfig(n_symbols=len(SYMBOLS), n_speakers=3, hidden=32, heads=2, encoder_layers=1,
                   decoder_layers=1, ffn_hidden=64, speaker_dim=16, variance_hidden=32,
                   postnet_layers=0, aligner_channels=16, dropout=0.0, variance_dropout=0.0,
                   pitch=True)


def tone(f0, seconds=1.0):
    t = np.arange(int(seconds * SR)) / SR
    return sum(0.3 / k * np.sin(2 * np.pi * f0 * k * t) for k in range(1, 5)).astype(np.float32)


@pytest.mark.parametrize("hz", [110.0, 220.0, 440.0])
def test_f0_of_a_tone_is_its_frequency_on_the_mel_grid(hz):
    wav = tone(hz)
    f0 = extract_f0(wav)
    assert len(f0) == audio.mel_spectrogram(wav).shape[-1] == frame_count(len(wav))
    voiced = f0[f0 > 0]
    assert len(voiced) > 0.9 * len(f0)
    assert torch.allclose(voiced, torch.full_like(voiced, hz), rtol=0.01)


def test_f0_of_silence_and_of_a_clip_too_short_is_unvoiced():
    assert torch.equal(extract_f0(np.zeros(SR, np.float32)), torch.zeros(frame_count(SR)))
    assert (extract_f0(tone(200.0, 0.02)) == 0).all()
    assert len(extract_f0(tone(200.0), frames=50)) == 50  # the mel's own length wins


def test_token_average_over_voiced_frames_with_unvoiced_and_zero_length_tokens():
    # 6 frames; durations 2, 0, 3, 1: token 1 has no frame, token 3's frame is unvoiced
    hard = durations_to_alignment(torch.tensor([[2, 0, 3, 1]]), 6)  # (1, 6, 4)
    values = torch.tensor([[1.0, 3.0, 5.0, 0.0, 7.0, 0.0]])
    voiced = torch.tensor([[True, True, True, False, True, False]])
    pitch, has = token_pitch(values, voiced, hard)
    assert torch.allclose(pitch, torch.tensor([[2.0, 0.0, 6.0, 0.0]]))  # unvoiced frame skipped
    assert has.tolist() == [[True, False, True, False]]
    nothing, none = token_pitch(values, torch.zeros_like(voiced), hard)  # a clip with no voice
    assert torch.equal(nothing, torch.zeros(1, 4)) and not none.any()


def test_normalization_per_speaker_and_a_speaker_without_voice():
    f0 = torch.tensor([100.0, 0.0, 200.0, 400.0])
    stats = PitchStats.of([f0])
    assert stats.voiced_frames == 3 and math.isclose(stats.mean, math.log(200.0), rel_tol=1e-6)
    values, voiced = normalize(f0[None], torch.tensor([stats.mean]), torch.tensor([stats.std]))
    assert voiced.tolist() == [[True, False, True, True]] and values[0, 1] == 0
    assert abs(float(values[voiced].mean())) < 1e-5 and torch.isfinite(values).all()
    silent = PitchStats.of([torch.zeros(10)])
    assert silent.voiced_frames == 0 and math.isfinite(silent.mean) and silent.std == 1.0


def batch_with_f0(f0s, speakers=(0, 1), sizes=((5, 30), (7, 40)), seed=0):
    g = torch.Generator().manual_seed(seed)
    items = [(Example(f"u{i}", s, torch.randint(1, TINY.n_symbols, (n,), generator=g),
                      torch.randn(80, t, generator=g) - 5), f0[:t], None)
             for i, ((n, t), s, f0) in enumerate(zip(sizes, speakers, f0s))]
    return collate_train(items)


def test_pitch_path_shapes_masks_and_no_nan_for_a_clip_without_voice():
    torch.manual_seed(0)
    model = FastSpeech2(TINY)
    voiced = torch.where(torch.arange(30) % 3 == 0, 0.0, 150.0 + torch.arange(30.0))
    batch = batch_with_f0([voiced, torch.zeros(40)])
    out = model.outputs(batch)
    assert out.pitch.shape == out.pitch_target.shape == out.pitch_mask.shape == batch.tokens.shape
    assert not out.pitch_mask[1].any()  # no voiced frame: every token left out
    assert not out.pitch_mask[~batch.token_mask].any()
    assert out.pitch_mask[0].any() and torch.isfinite(out.pitch_target).all()
    loss = model(batch)
    assert torch.isfinite(loss.total) and torch.isfinite(loss.parts["pitch"])
    loss.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # no voiced frame anywhere: the pitch term is 0, not NaN
    silent = model(batch_with_f0([torch.zeros(30), torch.zeros(40)]))
    assert float(silent.parts["pitch"].detach()) == 0.0


def test_zero_length_tokens_and_a_new_voice_use_their_own_statistics():
    torch.manual_seed(0)
    model = FastSpeech2(TINY)
    f0 = torch.full((30,), 220.0)
    batch = batch_with_f0([f0], speakers=(NEW_SPEAKER,), sizes=((5, 30),))
    fixed = torch.tensor([[10, 0, 10, 0, 10]])
    out = model.outputs(dataclasses.replace(batch, durations=fixed))
    assert out.pitch_mask.tolist() == [[True, False, True, False, True]]
    # a constant pitch normalized by its own clip's statistics is the voice's mean: 0
    assert torch.allclose(out.pitch_target, torch.zeros(1, 5), atol=1e-4)


def test_v1_models_have_no_pitch_and_ignore_f0():
    torch.manual_seed(0)
    model = FastSpeech2(ModelConfig(**{**TINY.__dict__, "pitch": False}))
    assert model.variance.pitch is None and "pitch_stats" not in model.state_dict()
    out = model(batch_with_f0([torch.full((30,), 100.0), torch.zeros(40)]))
    assert "pitch" not in out.parts


def test_cache_stores_f0_only_with_pitch_on_and_keeps_old_keys(tmp_path, monkeypatch):
    monkeypatch.setattr("metatts.data.features.tokenize", lambda text, mode: [1, 2, 3])
    wav = tmp_path / "a.wav"
    audio.save_audio(wav, tone(180.0))
    utt = Utterance("a", "s", "hello", wav, 1.0)
    assert FeatureSettings().key() == {"tokens": "phonemes"}  # v1 cache keys unchanged
    plain = FeatureCache(tmp_path / "c", FeatureSettings(tokens="characters"))
    pitched = FeatureCache(tmp_path / "c", FeatureSettings(tokens="characters", pitch=True))
    assert plain.key(utt) != pitched.key(utt)
    assert plain.get(utt).f0 is None
    features = pitched.get(utt)
    again = pitched.get(utt)
    assert pitched.hits == 1 and torch.equal(features.f0, again.f0)
    assert len(features.f0) == features.mel.shape[-1]
    voiced = features.f0[features.f0 > 0]
    assert len(voiced) > 0 and abs(float(voiced.median()) - 180.0) < 2.0
