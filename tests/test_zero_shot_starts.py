"""benchmarks/zero_shot_loss.py's starts: the vector spoken for an encoded voice."""

import pytest
import torch

from conftest import load_script


def test_starts_gain_nearest_and_blend():
    start_vector = load_script("benchmarks/zero_shot_loss.py").start_vector
    table = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    v = torch.tensor([0.9, 0.3])
    assert torch.equal(start_vector("gain:1", v, table), v)
    mean = table.mean(0)
    assert torch.allclose(start_vector("gain:2", v, table), mean + 2 * (v - mean))
    assert torch.equal(start_vector("nearest", v, table), table[0])
    # a cold softmax picks the nearest row, a hot one averages the rows; always a convex mix
    assert torch.allclose(start_vector("blend:0.001", v, table), table[0], atol=1e-5)
    assert torch.allclose(start_vector("blend:1000", v, table), mean, atol=1e-3)
    mid = start_vector("blend:0.5", v, table)
    assert 0 < float(mid[0]) < 1 and 0 < float(mid[1]) < 1
    with pytest.raises(ValueError, match="unknown start"):
        start_vector("closest", v, table)


def test_bad_starts_are_refused_before_any_work(capsys):
    script = load_script("benchmarks/zero_shot_loss.py")
    for bad in ("blend", "blend:0", "blend:x", "farthest", "crops", "crops:0", "crops:2.5"):
        with pytest.raises(SystemExit) as stop:
            script.main(["--checkpoints", "nowhere", "--starts", bad])
        assert stop.value.code == 2
        assert "use nearest, blend:T" in capsys.readouterr().err


def test_windows_cover_every_frame_in_pieces_of_the_training_crop():
    windows = load_script("benchmarks/zero_shot_loss.py").windows
    clips = [torch.arange(10.0)[None].repeat(2, 1), torch.arange(4.0)[None]]
    got = windows(clips, 4)
    assert [w.shape[-1] for w in got] == [4, 4, 4, 4]  # 0-3, 4-7, 6-9 (the last overlaps), short
    assert got[2][0].tolist() == [6.0, 7.0, 8.0, 9.0]
    assert torch.equal(got[3], clips[1])  # a clip no longer than a window stays whole
    assert torch.equal(torch.cat(got[:2], -1), clips[0][:, :8])
