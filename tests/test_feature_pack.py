"""The features pack that carries training clips to a machine without the corpus
(scripts/pack_features.py -> scripts/device_meta_train.py)."""

import math
from pathlib import Path

import torch

from conftest import load_script
from metatts.data import Utterance
from metatts.data.features import Features


def test_pack_round_trip(tmp_path):
    pack = load_script("scripts/pack_features.py")
    device = load_script("scripts/device_meta_train.py")
    torch.manual_seed(0)
    mel = (torch.randn(80, 37) * 2 - 5).clamp(math.log(1e-5), 1.5)  # a log-mel's range
    mel[:, :3] = math.log(1e-5)  # silence at the floor
    clips = [
        (Utterance("a1", "spk_a", "One two.", Path("a1.wav"), 0.4, "train", "natural"),
         Features(mel, torch.tensor([5, 9, 66]), torch.linspace(0, 220, 37))),
        (Utterance("b1", "spk_b", "Three.", Path("b1.wav"), 0.1, "val", None),
         Features(mel[:, :8].clone(), torch.tensor([7]), torch.zeros(8))),
    ]
    path = tmp_path / "p.xz"
    pack.write_pack(clips, path)
    read = device.PackedFeatures(path)
    assert [u for u in read.utterances] == [u for u, _ in clips]
    assert read.warm(read.utterances) == {}
    for u, f in clips:
        got = read.get(u)
        assert got.mel.shape == f.mel.shape and got.mel.dtype == torch.float32
        # 8-bit levels: within half a step, the floor exact
        assert float((got.mel - f.mel).abs().max()) <= pack.MEL_STEP / 2 + 1e-5
        assert torch.equal(got.tokens, f.tokens) and got.tokens.dtype == torch.int64
        assert torch.allclose(got.f0, f.f0, rtol=1e-3, atol=0.1)
    assert torch.allclose(read.get(clips[0][0]).mel[:, :3], mel[:, :3], atol=1e-6)


def test_packs_read_together_and_the_checkpoint_travels_in_shards(tmp_path):
    """Several packs (one per device call) read as one; the device pretraining's batches carry
    the fixed durations; a checkpoint split into shards joins back to the same tensors."""
    pack = load_script("scripts/pack_features.py")
    device = load_script("scripts/device_pretrain.py")
    mel = torch.full((80, 6), -3.0)
    a = (Utterance("a1", "spk_a", "One.", Path("a1.wav"), 0.1, "train", None),
         Features(mel, torch.tensor([5, 9]), torch.zeros(6)))
    b = (Utterance("b1", "spk_b", "Two.", Path("b1.wav"), 0.1, "train", None),
         Features(mel[:, :4].clone(), torch.tensor([7, 8, 9]), torch.zeros(4)))
    pack.write_pack([a], tmp_path / "p-0.xz")
    pack.write_pack([b], tmp_path / "p-1.xz")
    read = device.PackedFeatures(tmp_path / "p-0.xz", tmp_path / "p-1.xz")
    assert [u.id for u in read.utterances] == ["a1", "b1"]
    dataset = device.TrainingExamples(read.utterances, read, {"spk_a": 0, "spk_b": 1}, True)
    durations = {"a1": torch.tensor([4, 2]), "b1": torch.tensor([1, 2, 1])}
    batch = device.with_durations(durations)([dataset[0], dataset[1]])
    assert batch.durations.tolist() == [[4, 2, 0], [1, 2, 1]]
    assert batch.durations.sum(1).tolist() == batch.mel_lengths.tolist()

    from safetensors.torch import load_file, save_file
    tensors = {f"t{i}": torch.randn(64, 1024) for i in range(5)}  # 256 KiB each
    save_file(tensors, tmp_path / "model.safetensors")
    out = tmp_path / "back"
    out.mkdir()
    shards = device.shard(tmp_path / "model.safetensors", out, 600 * 1024)
    assert len(shards) == 3 and all(p.stat().st_size < 700 * 1024 for p in shards)
    joined = load_file(device.join(out))
    assert joined.keys() == tensors.keys()
    assert all(torch.equal(joined[k], v) for k, v in tensors.items())
