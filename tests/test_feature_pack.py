"""The features pack that carries training clips to a machine without the corpus
(scripts/pack_features.py -> scripts/device_meta_train.py)."""

import importlib.util
import math
from pathlib import Path

import torch

from metatts.data import Utterance
from metatts.data.features import Features

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pack_round_trip(tmp_path):
    pack, device = _script("pack_features"), _script("device_meta_train")
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
