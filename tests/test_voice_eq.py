"""benchmarks/voice_eq.py's equalizer: the mean real-minus-spoken log-mel over a voice's speech
frames, added to the speech frames of what synthesis makes for it."""

import dataclasses
import math

import pytest
import torch

from metatts import audio
from metatts.data.batch import Example, collate
from metatts.meta.support import fixed_alignment
from metatts.model.config import PostFilterConfig
from metatts.model.fastspeech2 import NEW_SPEAKER
from metatts.train.zero_shot import outputs_as
from conftest import load_script
from test_speaker_encoder import v2_batch, v2_model


SILENT = math.log(audio.LOG_CLAMP)
equalizer = load_script("benchmarks/voice_eq.py")


def support(batch):
    return [Example(f"c{i}", NEW_SPEAKER, batch.tokens[i, : batch.token_lengths[i]],
                    batch.mels[i, :, : batch.mel_lengths[i]],
                    f0=batch.f0[i, : batch.mel_lengths[i]]) for i in range(len(batch))]


def test_speech_weight_is_one_on_speech_and_zero_on_silence():
    mel = torch.full((audio.N_MELS, 10), SILENT)
    mel[:, 3:7] = -4.0
    w = equalizer.speech_weight(mel)
    assert w[3:7].tolist() == [1.0] * 4 and w[:3].sum() == 0 and w[7:].sum() == 0


def test_the_equalizer_recovers_a_spectral_offset_of_the_real_clips():
    # without energy and with the alignment fixed, the teacher-forced output does not depend on
    # the clip's mel values, so clips can be made of what the model speaks
    model = v2_model(energy=False).eval()
    items = fixed_alignment(model, support(v2_batch()), ["speaker.new"])
    vector = model.encode_speaker([x.mel for x in items])
    params = {"speaker.new": vector}
    # clips that are exactly what the model speaks for them, then those shifted by a tilt
    spoken = outputs_as(model, vector, collate(items)).spoken
    own = [dataclasses.replace(x, mel=spoken[i, :, : x.mel.shape[-1]].clone())
           for i, x in enumerate(items)]
    assert equalizer.estimate(model, params, own).abs().max() < 1e-4
    tilt = torch.linspace(-0.5, 0.5, audio.N_MELS)
    tilted = [dataclasses.replace(x, mel=x.mel + tilt[:, None]) for x in own]
    eq = equalizer.estimate(model, params, tilted)
    assert eq.shape == (audio.N_MELS,)
    assert torch.allclose(eq, tilt, atol=1e-4)
    smooth = equalizer.estimate(model, params, tilted, smooth=5)
    assert torch.allclose(smooth[5:-5], tilt[5:-5], atol=1e-4)  # linear: a moving average keeps it
    # with a post-filter the spoken mel is compared after it, as synthesis speaks it
    pf = PostFilterConfig(spectral=2.0, temporal=1.0)
    assert not torch.allclose(equalizer.estimate(model, params, own, pf), eq * 0, atol=1e-3)
    with pytest.raises(ValueError, match="at least one clip"):
        equalizer.estimate(model, params, [])


def test_apply_adds_to_speech_frames_only():
    mel = torch.full((audio.N_MELS, 6), SILENT)
    mel[:, 2:4] = -3.0
    eq = torch.full((audio.N_MELS,), 0.7)
    out = equalizer.equalize(mel, eq)
    assert torch.allclose(out[:, 2:4], mel[:, 2:4] + 0.7)
    assert torch.equal(out[:, :2], mel[:, :2]) and torch.equal(out[:, 4:], mel[:, 4:])
    assert torch.allclose(equalizer.equalize(mel, eq, 0.5)[:, 2], mel[:, 2] + 0.35)
    assert equalizer.equalize(mel, None) is mel
