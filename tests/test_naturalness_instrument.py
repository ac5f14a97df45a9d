"""benchmarks/naturalness.py: Distill-MOS, the naturalness instrument of reads that choose settings."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import naturalness  # noqa: E402

from metatts import audio  # noqa: E402
from metatts.assets import AssetError  # noqa: E402

CLIP = ROOT / "metatts/eval_speakers/kokoro_en_am_echo/kokoro_en_am_echo_0000.flac"


def test_clean_speech_reads_natural_and_the_same_speech_in_noise_reads_worse():
    wav = audio.load_audio(CLIP, audio.SAMPLE_RATE)
    noisy = wav + np.random.default_rng(0).standard_normal(len(wav)).astype(np.float32) * 0.05
    clean_score, noisy_score = naturalness.score([wav, noisy], audio.SAMPLE_RATE)
    assert 3.5 < clean_score <= 5.0
    assert 1.0 <= noisy_score < clean_score - 0.5
    # any rate: the same clip at 16 kHz reads the same
    at16 = audio.resample(wav, audio.SAMPLE_RATE, naturalness.RATE)
    assert naturalness.score([at16], naturalness.RATE)[0] == pytest.approx(clean_score, abs=0.05)


def test_a_silent_clip_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="silent"):
        naturalness.score([np.zeros(22050, dtype=np.float32)], audio.SAMPLE_RATE)


def test_weights_that_are_not_the_pinned_file_are_refused(monkeypatch):
    naturalness.load.cache_clear()
    monkeypatch.setattr(naturalness, "WEIGHTS_SHA256", "0" * 64)
    try:
        with pytest.raises(AssetError, match="sha256"):
            naturalness.load()
    finally:
        naturalness.load.cache_clear()


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    naturalness.load.cache_clear()

    def missing(module, pip_name):
        raise FileNotFoundError(f"package {pip_name} is not installed (pip install {pip_name})")

    monkeypatch.setattr(naturalness, "package_dir", missing)
    try:
        with pytest.raises(SystemExit, match="scripts/setup.sh"):
            naturalness.load()
    finally:
        naturalness.load.cache_clear()


def test_the_command_line_reads_files_and_refuses_a_missing_one(capsys, tmp_path):
    assert naturalness.main([str(CLIP)]) == 0
    score = float(capsys.readouterr().out.split()[0])
    assert 3.5 < score <= 5.0
    assert naturalness.main([str(tmp_path / "nothing.wav")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "text.wav").write_text("not audio")
    assert naturalness.main([str(tmp_path / "text.wav"), str(CLIP)]) == 1
    out, err = capsys.readouterr()
    assert "cannot read it as audio" in err and float(out.split()[0]) == pytest.approx(score)


def test_the_checkpoint_is_read_without_pickle(monkeypatch):
    import torch

    calls = []
    real_load = torch.load

    def load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    naturalness.load.cache_clear()
    monkeypatch.setattr(torch, "load", load)
    try:
        naturalness.load()
    finally:
        naturalness.load.cache_clear()
    assert calls == [True]
