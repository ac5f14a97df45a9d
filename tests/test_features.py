import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from metatts import audio
from metatts.data import features as feat
from metatts.data.batch import (MEL_PAD, TOKEN_PAD, Example, ExampleDataset, collate, load_batch,
                                speaker_index)
from metatts.data.features import FeatureCache, FeatureSettings
from metatts.data.readout import DatasetError
from metatts.data.utterance import Utterance


def tone(path: Path, seconds=0.5, freq=220.0) -> Path:
    t = np.arange(int(seconds * audio.SAMPLE_RATE)) / audio.SAMPLE_RATE
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), audio.SAMPLE_RATE)
    return path


def utt(path: Path, text="Hello there.", speaker="s1") -> Utterance:
    return Utterance(path.stem, speaker, text, path, sf.info(str(path)).duration)


@pytest.fixture
def fake_tokens(monkeypatch):
    """Characters as ids, counting calls: cache tests need no phonemizer."""
    calls = []

    def tokenize(text, mode):
        calls.append((text, mode))
        return [ord(c) % 50 + 1 for c in text] if mode == "characters" else [1, 2, 3]

    monkeypatch.setattr(feat, "tokenize", tokenize)
    return calls


def test_cache_hit_returns_the_stored_features(tmp_path, fake_tokens):
    u = utt(tone(tmp_path / "a.wav"))
    cache = FeatureCache(tmp_path / "cache")
    first = cache.get(u)
    assert first.mel.shape == (audio.N_MELS, pytest.approx(0.5 * audio.SAMPLE_RATE / 256, abs=2))
    assert first.mel.dtype == torch.float32 and first.tokens.dtype == torch.long
    again = FeatureCache(tmp_path / "cache").get(u)  # a new process sees the same entry
    assert torch.equal(first.mel, again.mel) and torch.equal(first.tokens, again.tokens)
    assert len(fake_tokens) == 1 and cache.misses == 1
    stored = load_file(cache.path(u))  # safetensors, not pickle
    assert set(stored) == {"mel", "tokens"}


def test_changing_a_setting_or_the_text_recomputes(tmp_path, fake_tokens):
    u = utt(tone(tmp_path / "a.wav"))
    phonemes = FeatureCache(tmp_path / "cache", FeatureSettings(tokens="phonemes"))
    characters = FeatureCache(tmp_path / "cache", FeatureSettings(tokens="characters"))
    assert phonemes.key(u) != characters.key(u)
    assert phonemes.get(u).tokens.tolist() == [1, 2, 3]
    assert characters.get(u).tokens.tolist() != [1, 2, 3] and characters.misses == 1
    other_text = Utterance(u.id, u.speaker, "Goodbye.", u.audio, u.duration)
    assert phonemes.key(other_text) != phonemes.key(u)


def test_changing_the_audio_recomputes(tmp_path, fake_tokens):
    path = tone(tmp_path / "a.wav", 0.5)
    cache = FeatureCache(tmp_path / "cache")
    old_key, old_mel = cache.key(utt(path)), cache.get(utt(path)).mel
    stat = path.stat()
    tone(path, 0.7, freq=440.0)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    new = cache.get(utt(path))
    assert cache.key(utt(path)) != old_key and cache.misses == 2 and cache.hits == 0
    assert new.mel.shape[1] > old_mel.shape[1]


def test_content_hash_ignores_the_path(tmp_path, fake_tokens):
    a = tone(tmp_path / "a.wav")
    b = tmp_path / "b.wav"
    b.write_bytes(a.read_bytes())
    cache = FeatureCache(tmp_path / "cache", content_hash=True)
    assert cache.key(utt(a)) == cache.key(utt(b))
    plain = FeatureCache(tmp_path / "cache")
    assert plain.key(utt(a)) != plain.key(utt(b))


def test_a_new_symbol_table_invalidates(tmp_path, fake_tokens, monkeypatch):
    u = utt(tone(tmp_path / "a.wav"))
    cache = FeatureCache(tmp_path / "cache")
    before = cache.key(u)
    monkeypatch.setattr(feat, "tokenizer_fingerprint", lambda mode: {"symbols": "v2"})
    assert cache.key(u) != before


def test_corrupt_entry_is_recomputed(tmp_path, fake_tokens):
    u = utt(tone(tmp_path / "a.wav"))
    cache = FeatureCache(tmp_path / "cache")
    good = cache.get(u)
    cache.path(u).write_bytes(b"garbage")
    assert torch.equal(cache.get(u).mel, good.mel) and cache.misses == 2


def test_bad_clips_are_reported(tmp_path, fake_tokens):
    sf.write(tmp_path / "silent.wav", np.zeros(22050, np.float32), 22050)
    cache = FeatureCache(tmp_path / "cache")
    good = utt(tone(tmp_path / "a.wav"))
    gone = Utterance("gone", "s1", "Hi.", tmp_path / "gone.wav", 1.0)
    failed = cache.warm([good, utt(tmp_path / "silent.wav"), gone], jobs=1)
    assert set(failed) == {"silent", "gone"} and "silent" in failed["silent"]
    assert cache.path(good).is_file()


def test_warm_in_processes_matches_one_process(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(22050, np.float32), 22050)
    clips = [utt(tone(tmp_path / f"{i}.wav", freq=200 + 50 * i), text=f"Tone {i}.")
             for i in range(3)] + [utt(tmp_path / "silent.wav")]
    settings = FeatureSettings(tokens="characters", pitch=True)
    serial, parallel = FeatureCache(tmp_path / "a", settings), FeatureCache(tmp_path / "b", settings)
    assert serial.warm(clips, jobs=1).keys() == parallel.warm(clips, jobs=2).keys() == {"silent"}
    assert parallel.misses == 3
    for u in clips[:3]:
        a, b = serial.get(u), parallel.get(u)
        assert torch.equal(a.mel, b.mel) and torch.equal(a.tokens, b.tokens)
        assert torch.equal(a.f0, b.f0)
    assert parallel.hits == 3  # read back, not recomputed


def test_real_tokenizer(tmp_path):
    u = utt(tone(tmp_path / "a.wav"), text="Hi!")
    tokens = FeatureCache(tmp_path, FeatureSettings(tokens="characters")).get(u).tokens
    from metatts.text import SYMBOLS
    assert SYMBOLS.decode(tokens) == "hi!"
    with pytest.raises(ValueError):
        FeatureSettings(tokens="bytes")


def example(i, n_tokens, n_frames, speaker=0):
    return Example(f"u{i}", speaker, torch.arange(1, n_tokens + 1),
                   torch.full((audio.N_MELS, n_frames), float(i)))


def test_collate_pads_and_masks():
    batch = collate([example(1, 3, 5, speaker=2), example(2, 6, 2, speaker=0)])
    assert batch.ids == ("u1", "u2") and len(batch) == 2
    assert batch.tokens.shape == (2, 6) and batch.tokens.dtype == torch.long
    assert batch.mels.shape == (2, audio.N_MELS, 5)
    assert batch.token_lengths.tolist() == [3, 6] and batch.mel_lengths.tolist() == [5, 2]
    assert batch.speakers.tolist() == [2, 0] and batch.speakers.dtype == torch.long
    assert batch.tokens[0].tolist() == [1, 2, 3, TOKEN_PAD, TOKEN_PAD, TOKEN_PAD]
    assert batch.token_mask.tolist() == [[True] * 3 + [False] * 3, [True] * 6]
    assert batch.mel_mask.tolist() == [[True] * 5, [True, True, False, False, False]]
    assert (batch.mels[1, :, 2:] == MEL_PAD).all() and (batch.mels[1, :, :2] == 2.0).all()
    assert MEL_PAD == pytest.approx(math.log(audio.LOG_CLAMP)) and TOKEN_PAD == 0
    assert batch.to("cpu").tokens.equal(batch.tokens)
    with pytest.raises(ValueError, match="empty"):
        collate([])


def test_load_batch_and_dataset(tmp_path, fake_tokens):
    utts = [utt(tone(tmp_path / "a.wav", 0.5), speaker="s2"),
            utt(tone(tmp_path / "b.wav", 0.3), speaker="s1")]
    speakers = speaker_index(utts)
    assert speakers == {"s1": 0, "s2": 1}
    cache = FeatureCache(tmp_path / "cache")
    batch = load_batch(utts, cache, speakers)
    assert batch.speakers.tolist() == [1, 0] and batch.mel_lengths[0] > batch.mel_lengths[1]
    loader = torch.utils.data.DataLoader(ExampleDataset(utts, cache, speakers), batch_size=2,
                                         collate_fn=collate)
    assert next(iter(loader)).mels.equal(batch.mels)
    with pytest.raises(DatasetError, match="not in the speaker table"):
        load_batch(utts, cache, {"s1": 0})
