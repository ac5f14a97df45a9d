from pathlib import Path

import numpy as np
import pytest

from metatts.data import DatasetError, EpisodeSampler, Utterance, split_speakers, text_key


def corpus(n_speakers=10, n_clips=8, split=None):
    return [Utterance(f"s{s}_{i}", f"s{s}", f"Sentence number {i}.", Path(f"s{s}/{i}.wav"), 1.0,
                      split)
            for s in range(n_speakers) for i in range(n_clips)]


def test_split_is_speaker_disjoint_and_deterministic():
    utts = corpus(20)
    splits = split_speakers(utts, val=0.1, test=0.2, seed=3)
    train, val, test = (set(splits.speakers(n)) for n in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (14, 2, 4)
    assert not (train & val or train & test or val & test)
    assert len(splits.train) + len(splits.val) + len(splits.test) == len(utts)
    assert split_speakers(utts, val=0.1, test=0.2, seed=3) == splits
    assert len({tuple(split_speakers(utts, 0.1, 0.2, seed).speakers("test"))
                for seed in range(5)}) > 1
    assert len(split_speakers(utts, val=1, test=3).speakers("test")) == 3


def test_small_fractions_still_give_a_speaker():
    splits = split_speakers(corpus(3), val=0.1, test=0.1)
    assert [len(splits.speakers(n)) for n in ("train", "val", "test")] == [1, 1, 1]
    with pytest.raises(DatasetError, match="cannot take"):
        split_speakers(corpus(3), val=2, test=2)


def test_declared_splits_are_honoured():
    utts = corpus(2, split="test") + [
        Utterance(f"x{i}", f"x{i % 4}", "Hi.", Path("x.wav"), 1.0) for i in range(8)]
    splits = split_speakers(utts, val=1, test=0, seed=0)
    assert splits.speakers("test") == ["s0", "s1"]
    assert len(splits.speakers("val")) == 1 and len(splits.speakers("train")) == 3
    mixed = corpus(1, 2, split="train") + corpus(1, 2, split="val")
    with pytest.raises(DatasetError, match="speaker-disjoint"):
        split_speakers(mixed)


def test_text_key_ignores_case_and_punctuation():
    assert text_key("Hello, World!") == text_key("hello world") == "hello world"
    assert text_key("It's—fine.") != text_key("Its fine")


def test_support_and_query_texts_are_disjoint():
    sampler = EpisodeSampler(corpus(), k=4, q=4, seed=1)
    for i in range(50):
        episode = sampler.sample(i)
        support = {text_key(u.text) for u in episode.support}
        query = {text_key(u.text) for u in episode.query}
        assert len(support) == 4 and len(query) == 4 and not support & query
        assert {u.speaker for u in episode.support + episode.query} == {episode.speaker}


def test_duplicate_texts_never_cross_support_and_query():
    utts = [Utterance(f"a{i}", "a", text, Path("a.wav"), 1.0)
            for i, text in enumerate(["One.", "one", "ONE!", "Two.", "two", "Three"])]
    sampler = EpisodeSampler(utts, k=2, q=1, seed=0)
    for i in range(30):
        episode = sampler.sample(i)
        assert not {text_key(u.text) for u in episode.support} & {
            text_key(u.text) for u in episode.query}
    with pytest.raises(DatasetError, match=r"a \(3\)"):
        EpisodeSampler(utts, k=3, q=1)


def test_sampling_is_reproducible():
    a, b = EpisodeSampler(corpus(), 3, 2, seed=7), EpisodeSampler(corpus()[::-1], 3, 2, seed=7)
    assert [a.sample(i) for i in range(10)] == [b.sample(i) for i in range(10)]
    assert a.sample(3) == a.sample(3)
    other = EpisodeSampler(corpus(), 3, 2, seed=8)
    assert [a.sample(i) for i in range(10)] != [other.sample(i) for i in range(10)]
    rng1, rng2 = np.random.default_rng(0), np.random.default_rng(0)
    assert a.sample(rng1, speaker="s4") == a.sample(rng2, speaker="s4")


def test_meta_batch_uses_distinct_speakers():
    sampler = EpisodeSampler(corpus(6), k=2, q=2, seed=0)
    batch = sampler.meta_batch(step=5, size=4)
    assert len({e.speaker for e in batch}) == 4
    assert batch == sampler.meta_batch(step=5, size=4) != sampler.meta_batch(step=6, size=4)
    assert len(sampler.meta_batch(0, 10)) == 10  # more episodes than speakers: repeats allowed


def test_too_few_clips_is_a_clear_error():
    utts = corpus(3, 8) + [
        Utterance(f"t{i}", "tiny", f"Line {i}.", Path("t.wav"), 1.0) for i in range(3)]
    with pytest.raises(DatasetError, match=r"k \+ q = 5 .*: tiny \(3\)"):
        EpisodeSampler(utts, k=3, q=2)
    sampler = EpisodeSampler(utts, k=3, q=2, skip_small_speakers=True)
    assert sampler.excluded == {"tiny": 3} and "tiny" not in sampler.speakers
    with pytest.raises(DatasetError, match="only 3 distinct texts"):
        sampler.sample(0, speaker="tiny")
    with pytest.raises(DatasetError, match="positive integers"):
        EpisodeSampler(utts, k=0, q=2)
    with pytest.raises(DatasetError, match="no speaker"):
        EpisodeSampler(utts[-3:], k=3, q=2, skip_small_speakers=True)


def test_reserved_speakers_are_a_seeded_disjoint_share_of_the_training_speakers():
    from metatts.data.splits import reserve_speakers

    utts = corpus(10, 3)
    pretrain, reserved = reserve_speakers(utts, 0.3, seed=1)
    names = {u.speaker for u in reserved}
    assert len(names) == 3 and not names & {u.speaker for u in pretrain}
    assert len(pretrain) + len(reserved) == len(utts)
    assert reserve_speakers(list(reversed(utts)), 0.3, seed=1)[1] and {
        u.speaker for u in reserve_speakers(list(reversed(utts)), 0.3, seed=1)[1]} == names
    assert reserve_speakers(utts, 0.0)[1] == () and len(reserve_speakers(utts, 0.0)[0]) == 30
    with pytest.raises(DatasetError, match="meta_speakers"):
        reserve_speakers(utts[:3], 0.9)
