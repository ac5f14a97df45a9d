"""benchmarks/verifier.py: its equal error rate, and the verifier's embeddings."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import verifier  # noqa: E402


def test_eer_of_separated_random_and_inverted_scores():
    same = np.array([True] * 50 + [False] * 200)
    assert verifier.eer(np.where(same, 0.9, 0.1), same) == 0.0
    assert verifier.eer(np.where(same, 0.1, 0.9), same) == 1.0
    rng = np.random.default_rng(0)
    assert abs(verifier.eer(rng.random(len(same)), same) - 0.5) < 0.1
    # one same pair below every different pair of 4: 1 of 4 same pairs missed at the EER point
    scores = np.array([0.9, 0.8, 0.7, 0.0, 0.5, 0.4, 0.3, 0.2])
    assert verifier.eer(scores, np.array([True] * 4 + [False] * 4)) == pytest.approx(0.25)


def test_embeddings_are_unit_vectors_one_per_clip_of_any_length():
    torch.manual_seed(0)
    model = verifier.build().eval()
    wavs = [np.random.default_rng(i).standard_normal(n).astype(np.float32) * 0.1
            for i, n in enumerate((22050, 40000))]
    e = verifier.embed(model, wavs)
    assert e.shape == (2, verifier.EMBEDDING)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2))


def test_a_split_the_manifest_lacks_is_refused_with_the_build_command(tmp_path):
    (tmp_path / "manifest.jsonl").write_text(json.dumps(
        {"speaker": "a", "split": "train", "audio": "a/a.wav"}) + "\n")
    assert list(verifier.manifest(tmp_path, "train")) == ["a"]
    with pytest.raises(SystemExit, match="python -m metatts corpus"):
        verifier.manifest(tmp_path, "val")


def test_training_saves_and_resumes_with_its_optimizer_state(tmp_path):
    import soundfile as sf
    from safetensors.torch import load_file

    rows = []
    for s in ("a", "b"):
        (tmp_path / s).mkdir()
        for i in range(3):
            t = np.arange(2 * 22050) / 22050
            wav = 0.3 * np.sin(2 * np.pi * (150 + 100 * (s == "b") + 10 * i) * t)
            sf.write(tmp_path / s / f"{i}.wav", wav.astype(np.float32), 22050)
            rows.append({"speaker": s, "split": "train", "audio": f"{s}/{i}.wav"})
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out"
    argv = ["train", "--data", str(tmp_path), "--out", str(out), "--cache", str(tmp_path / "c"),
            "--minutes", "0.001", "--batch", "4"]
    assert verifier.main(argv) == 0
    first = json.loads((out / "train_state.json").read_text())["step"]
    assert first >= 1 and "adam.0.exp_avg" in load_file(str(out / "train_state.safetensors"))
    assert verifier.main(argv) == 0  # resumes: the features from the cache, the step goes on
    assert json.loads((out / "train_state.json").read_text())["step"] > first
    model = verifier.load(out)
    assert verifier.embed(model, [np.zeros(22050, np.float32) + 0.01]).shape == (1, 128)
