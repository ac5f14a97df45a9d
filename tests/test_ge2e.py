import numpy as np
import pytest
import soundfile as sf
import torch

from metatts import ge2e
from metatts.audio import load_audio

# ge2e.embed_ge2e of tests/fixtures/speech/awb/awb_01.wav (22,050 Hz), first 8 of 256 values,
# computed when the module was written (equal to resemblyzer 0.1.4's own to 2e-7).
AWB_01_HEAD = [0.06355562, 0.0, 0.09968001, 0.0, 0.0, 0.02880915, 0.0, 0.0]


def test_weights_are_the_pinned_release():
    assert ge2e._bundled().name == "pretrained.pt"  # sha256 checked inside
    model = ge2e.load_ge2e()
    assert sum(p.numel() for p in model.parameters()) == 1_423_616  # 3-layer LSTM 256 + linear 256


@pytest.mark.parametrize("n_samples, starts", [
    (1600, [0]),  # shorter than one partial: one, zero-padded
    (25600, [0]),  # exactly one partial (1.6 s)
    (48000, [0, 77, 154]),  # 3 s: a step of 77 frames (1.3 partials per second)
    (80000, [0, 77, 154, 231, 308]),
])
def test_partials_are_resemblyzers_windows(n_samples, starts):
    assert ge2e.partial_starts(n_samples) == starts


def test_embedding_is_the_stored_one(speech):
    wav, rate = sf.read(str(speech[0][1]), dtype="float32")
    assert speech[0][1].name == "awb_01.wav"
    emb = ge2e.embed_ge2e(wav, rate)
    assert emb.shape == (1, 256) and abs(float(emb.norm()) - 1) < 1e-5
    assert np.allclose(emb[0, :8].numpy(), AWB_01_HEAD, atol=1e-4)


def test_embedding_equals_resemblyzers_own(speech):
    try:
        from resemblyzer import VoiceEncoder, preprocess_wav
    except Exception as err:  # e.g. webrtcvad without pkg_resources (setuptools >= 81)
        pytest.skip(f"resemblyzer's own code cannot run here ({err}); the stored-value test holds")
    encoder = VoiceEncoder("cpu", verbose=False)
    clips = [sf.read(str(path), dtype="float32") for _, path, _ in speech[::4]]  # 3 speakers
    ours = ge2e.embed_ge2e([w for w, _ in clips], clips[0][1])
    for (wav, rate), emb in zip(clips, ours, strict=True):
        theirs = encoder.embed_utterance(preprocess_wav(wav, rate))
        assert np.abs(theirs - emb.numpy()).max() < 1e-4
    for n in (1600, 25600, 48000, 80000, 123457):
        _, mel_slices = encoder.compute_partial_slices(n, 1.3, 0.75)
        assert ge2e.partial_starts(n) == [s.start for s in mel_slices]


def test_embedding_does_not_depend_on_batch(speech):
    wavs = [load_audio(path, 16000) for _, path, _ in speech[:2]]
    together = ge2e.embed_ge2e(wavs, 16000, batch_size=3)
    alone = torch.cat([ge2e.embed_ge2e(w, 16000) for w in wavs])
    assert torch.allclose(together, alone, atol=1e-5)


def test_same_speaker_scores_higher_than_different(speech):
    wavs = [load_audio(path, 16000) for _, path, _ in speech]
    names = [name for name, _, _ in speech]
    sim = (lambda e: e @ e.T)(ge2e.embed_ge2e(wavs, 16000))
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    same = [sim[i, j].item() for i, j in pairs if names[i] == names[j]]
    diff = [sim[i, j].item() for i, j in pairs if names[i] != names[j]]
    assert min(same) > max(diff), (min(same), max(diff))
