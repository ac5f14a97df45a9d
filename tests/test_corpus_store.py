"""The corpus store: slow voices packed as Opus, restored into any build folder, build resumes."""

import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from metatts.audio import SAMPLE_RATE, mel_spectrogram, save_audio
from metatts.corpus import store
from metatts.corpus.build import BuildConfig, build
from metatts.corpus.manifest import Clip
from tests.test_corpus import _tiny_voices


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    """A vowel-like harmonic signal with a moving pitch and syllable-rate amplitude."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    wav = sum(np.sin(k * phase) / k for k in range(1, 20))
    wav = wav * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)) + 0.01 * rng.standard_normal(len(t))
    return (0.2 * wav / np.abs(wav).max()).astype(np.float32)


def _clip(speaker: str, i: int, engine: str = "kokoro-en") -> Clip:
    utt = f"{speaker}_{i:04d}"
    return Clip(id=utt, speaker=speaker, engine=engine, voice="v", licence="l", split="train",
                kind="statement", text=f"Sentence number {i}.", audio=f"{speaker}/{utt}.wav",
                group="natural")


def _write(root, clip, wav):
    save_audio(root / clip.audio, wav)
    (root / clip.audio).with_suffix(".txt").write_text(clip.text + "\n")


def test_pack_and_unpack_round_trip_keeps_length_text_and_mel(tmp_path):
    root, restored, shelf = tmp_path / "a", tmp_path / "b", tmp_path / "store"
    clips = [_clip("kokoro_mix_0001", i) for i in range(3)] + [_clip("kal", 0, engine="flite")]
    wavs = [_speechlike(1.0 + 0.5 * i, i) for i in range(4)]
    for clip, wav in zip(clips, wavs):
        _write(root, clip, wav)

    assert store.pack(root, shelf, clips) == ["kokoro_mix_0001"]  # flite is cheap: not stored
    assert sorted(p.name for p in shelf.iterdir()) == ["kokoro_mix_0001.zip"]
    with zipfile.ZipFile(shelf / "kokoro_mix_0001.zip") as z:
        assert len(z.namelist()) == 9  # .opus, .txt and .len per clip
    assert store.pack(root, shelf, clips) == []  # nothing new: the archive is left as it is

    assert store.unpack(shelf, restored) == 3
    for clip, wav in zip(clips[:3], wavs):
        back, rate = sf.read(str(restored / clip.audio), dtype="float32")
        assert rate == SAMPLE_RATE and len(back) == len(wav)
        assert (restored / clip.audio).with_suffix(".txt").read_text() == clip.text + "\n"
        a, b = mel_spectrogram(torch.from_numpy(wav)), mel_spectrogram(torch.from_numpy(back))
        loud = a > a.max() - 6.9  # within 30 dB of the peak
        assert (a - b).abs()[loud].mean() < 0.3
    assert store.unpack(shelf, restored) == 0  # already there


def test_pack_grows_an_archive_and_unpack_refuses_a_broken_one(tmp_path):
    root, shelf = tmp_path / "a", tmp_path / "store"
    clips = [_clip("kokoro_en_af_heart", i) for i in range(2)]
    _write(root, clips[0], _speechlike(1.0, 0))
    store.pack(root, shelf, clips)
    _write(root, clips[1], _speechlike(1.0, 1))
    assert store.pack(root, shelf, clips) == ["kokoro_en_af_heart"]
    assert store.unpack(shelf, tmp_path / "b") == 2
    (shelf / "kokoro_en_af_heart.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a zip archive"):
        store.unpack(shelf, tmp_path / "c")


def test_a_build_with_a_store_resumes_elsewhere_without_rendering(tmp_path, monkeypatch):
    voices = _tiny_voices()[:1]  # flite kal
    monkeypatch.setattr(store, "STORED_ENGINES", frozenset({"flite"}))
    config = BuildConfig(seed=3, jobs=1, clips_per_speaker=2)
    first = build(tmp_path / "a", config, voices, store=tmp_path / "store")
    assert first.written == 2 and (tmp_path / "store" / "kal.zip").is_file()
    elsewhere = build(tmp_path / "b", config, voices, store=tmp_path / "store")
    assert elsewhere.written == 0 and [c.id for c in elsewhere.clips] == [c.id for c in first.clips]
    for a, b in zip(first.clips, elsewhere.clips):
        assert abs(a.seconds - b.seconds) < 1e-3 and a.text == b.text
