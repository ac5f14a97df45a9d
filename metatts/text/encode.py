"""Text to symbol ids: phonemes from espeak-ng, or lower-case letters as a fallback."""

from __future__ import annotations

import unicodedata

from metatts.text.errors import TextError
from metatts.text.normalize import normalize_text
from metatts.text.phonemes import phonemize
from metatts.text.symbols import SILENT, SYMBOLS, SymbolTable

MODES = ("phonemes", "characters")


def to_characters(text: str) -> str:
    """Normalized text in lower case with accents removed: 'Café, 2!' -> 'cafe, two!'."""
    decomposed = unicodedata.normalize("NFKD", normalize_text(text).lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def text_to_ids(text: str, mode: str = "phonemes", table: SymbolTable = SYMBOLS) -> list[int]:
    """Symbol ids for ``text`` (normalized first); :class:`TextError` if nothing is speakable."""
    if mode == "phonemes":
        seq = phonemize(text)
    elif mode == "characters":
        seq = to_characters(text)
    else:
        raise ValueError(f"Unknown text mode {mode!r}; use one of {MODES}.")
    ids = table.encode(seq)
    if all(table.symbols[i] in SILENT for i in ids):
        raise TextError(f"Nothing to speak in {text!r}: no letters or phonemes after "
                        "normalization (empty, or only punctuation, symbols or emoji).")
    return ids
