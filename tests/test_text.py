import sys
import warnings

import pytest

from metatts.text import (
    SYMBOLS, EspeakUnavailableError, SymbolTable, TextError, UnknownSymbolWarning, normalize_text,
    phonemize, split_sentences, text_to_ids,
)
from metatts.text import phonemes

needs_espeak = pytest.mark.skipif(not phonemes.espeak_available(), reason="espeak-ng not installed")


@pytest.mark.parametrize("text, expected", [
    # currency
    ("$3.50", "three dollars and fifty cents"),
    ("$1", "one dollar"),
    ("$0.99", "ninety nine cents"),
    ("$2.5 million", "two point five million dollars"),
    ("£5.01", "five pounds and one penny"),
    # ordinals
    ("1st", "first"),
    ("21st", "twenty first"),
    ("the 112th day", "the one hundred twelfth day"),
    # years and decades
    ("1990s", "nineteen nineties"),
    ("the '80s", "the eighties"),
    ("in 1984", "in nineteen eighty four"),
    ("in 2005", "in two thousand five"),
    ("1939-1945", "nineteen thirty nine to nineteen forty five"),
    # decimals, percentages, negatives
    ("3.14", "three point one four"),
    ("50%", "fifty percent"),
    ("3.5 %", "three point five percent"),
    ("-5", "minus five"),
    # times
    ("10:30", "ten thirty"),
    ("10:05", "ten oh five"),
    ("7:45 pm", "seven forty five PM"),
    ("at 5 a.m.", "at five AM."),
    # big numbers
    ("1,000,000", "one million"),
    ("1234567", "one million two hundred thirty four thousand five hundred sixty seven"),
    ("1,2,3", "one, two, three"),
    ("007", "zero zero seven"),
    # abbreviations
    ("Dr. Smith", "Doctor Smith"),
    ("Mulholland Dr. is long.", "Mulholland Drive is long."),
    ("St. James St.", "Saint James Street."),
    ("Mr Smith and Mrs. Jones", "Mister Smith and Missus Jones"),
    ("apples, pears, etc.", "apples, pears, et cetera."),
    ("e.g. this", "for example this"),
    ("No. 5", "number five"),
    ("U.S.A.", "USA."),
    # symbols, unicode and punctuation cleanup
    ("x & y", "x and y"),
    ("“Hello,” she said — ‘quietly’…", "Hello, she said, quietly…"),
    ("Wait... what?!", "Wait… what?"),
    ("I donʼt know, Hawaiʻi.", "I don't know, Hawai'i."),  # modifier-letter apostrophes
    ("Hello!!!", "Hello!"),
    ("(see above)", "see above"),
    ("Hi 😀 日本 there", "Hi there"),
    ("Café  naïve\n résumé", "Café naïve résumé"),
    ("!!!", ""),
])
def test_normalize_table(text, expected):
    assert normalize_text(text) == expected


def test_normalize_rejects_non_text():
    with pytest.raises(TextError, match="str"):
        normalize_text(b"bytes")


@needs_espeak
def test_phonemize_sentence_is_ipa_and_deterministic():
    ipa = phonemize("The quick brown fox jumps over the lazy dog.")
    assert ipa == phonemize("The quick brown fox jumps over the lazy dog.")
    assert "ˈ" in ipa and ipa.endswith(".") and len(ipa.split()) >= 8
    assert set(ipa) <= set(SYMBOLS.symbols)


@needs_espeak
def test_phonemize_batch_equals_single_and_keeps_punctuation():
    texts = ["Hello, world!", "Is it 10:30?", "Dr. Smith paid $3.50."]
    assert phonemize(texts) == [phonemize(t) for t in texts]
    assert phonemize("Hello, world!") == "həlˈoʊ, wˈɜːld!"


def test_symbol_table_round_trip_and_dict():
    seq = "həlˈoʊ, wˈɜːld! bˈʌʔn̩"
    assert SYMBOLS.decode(SYMBOLS.encode(seq)) == seq
    assert SymbolTable.from_dict(SYMBOLS.to_dict()) == SYMBOLS
    assert SYMBOLS.encode("_") == [SYMBOLS.pad_id] == [0]
    with pytest.raises(ValueError, match="outside"):
        SYMBOLS.decode([len(SYMBOLS)])
    with pytest.raises(ValueError, match="keys"):
        SymbolTable.from_dict({**SYMBOLS.to_dict(), "extra": 1})


def test_unknown_symbols_mapped_or_dropped_with_one_warning():
    with pytest.warns(UnknownSymbolWarning) as record:
        ids = SYMBOLS.encode("ɬa ɬ ☃")  # ɬ has a near symbol, the snowman has none
        SYMBOLS.encode("ɬ☃")
    assert SYMBOLS.decode(ids) == "la l "
    assert sorted(str(w.message).split()[1] for w in record) == ["'ɬ'", "'☃'"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SYMBOLS.decode(SYMBOLS.encode("ABC")) == "abc"  # case folding is silent


@pytest.mark.parametrize("mode", ["phonemes", "characters"])
@pytest.mark.parametrize("text", ["", "   ", "?!...", "😀🎉", "日本"])
def test_unspeakable_text_raises(text, mode):
    if mode == "phonemes" and not phonemes.espeak_available():
        pytest.skip("espeak-ng not installed")
    with pytest.raises(TextError, match="Nothing to speak"):
        text_to_ids(text, mode=mode)


def test_characters_fallback():
    ids = text_to_ids("Café, 2 Dr. Who!", mode="characters")
    assert SYMBOLS.decode(ids) == "cafe, two doctor who!"
    with pytest.raises(ValueError, match="characters"):
        text_to_ids("hi", mode="letters")


def test_missing_espeak_error_suggests_characters(monkeypatch):
    monkeypatch.setitem(sys.modules, "phonemizer.backend", None)
    with pytest.raises(EspeakUnavailableError, match="characters"):
        phonemes._backend.__wrapped__()


def test_phoneme_mode_without_espeak_raises_clear_error(monkeypatch):
    def unavailable():
        raise EspeakUnavailableError("no espeak; use mode='characters'")
    monkeypatch.setattr(phonemes, "_backend", unavailable)
    with pytest.raises(EspeakUnavailableError, match="characters"):
        text_to_ids("hello")
    assert text_to_ids("hello", mode="characters")


@pytest.mark.parametrize("text, expected", [
    ("Dr. Smith is here. He left! Did he? Yes.",
     ["Dr. Smith is here.", "He left!", "Did he?", "Yes."]),
    ("Mr. J. K. Rowling met Mrs. Jones in the U.S. Army. Then e.g. this.",
     ["Mr. J. K. Rowling met Mrs. Jones in the U.S. Army.", "Then e.g. this."]),
    ("It costs $3.50. It was 1984. Fine", ["It costs $3.50.", "It was 1984.", "Fine"]),
    ("Wait... what? Wait... Now!\n\nnew paragraph",
     ["Wait... what?", "Wait...", "Now!", "new paragraph"]),
    ("no final mark", ["no final mark"]),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_split_sentences_max_chars_and_empty():
    parts = split_sentences("one, two, three, four five six seven eight nine ten", max_chars=20)
    assert all(len(p) <= 20 for p in parts) and " ".join(parts).count(" ") == 9
    with pytest.raises(TextError):
        split_sentences(" ... ")
