"""The fixed symbol table: every input token the acoustic model knows, saved in each checkpoint.

One table serves both input modes: IPA from espeak-ng (en-us, with stress and length marks) and
the lower-case letter fallback. A symbol outside the table never crashes encoding: it is mapped to
a near equivalent (rare IPA to English phones, accented letters to their base letter) or dropped,
and each such symbol is reported once per process with an :class:`UnknownSymbolWarning`.
"""

from __future__ import annotations

import functools
import unicodedata
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

PAD = "_"
PUNCTUATION = "!'(),-.:;?¡¿—…\""
SPACE = " "
LETTERS = "abcdefghijklmnopqrstuvwxyz"
# Everything espeak-ng 1.52 emits for en-us besides ASCII letters (measured on ~5,500 words):
# vowels, consonants, stress (primary, secondary), length, syllabic (U+0329), palatalized.
IPA = "æðŋɐɑɔəɚɛɜɡɪɹɾʃʊʌʒʔθᵻ" + "ˈˌː" + "\u0329" + "ʲ"

# Marks that carry no sound of their own.
SILENT = frozenset(PAD + PUNCTUATION + SPACE + "ˈˌː\u0329ʲ")

# Symbols outside the table -> nearest symbols inside it ("" drops the symbol).
NEAR = {
    "ɫ": "l", "ʍ": "w", "χ": "x", "ɣ": "ɡ", "ʁ": "ɹ", "ʀ": "ɹ", "ɝ": "ɚ", "ɲ": "nj", "ʎ": "lj",
    "β": "b", "ɸ": "f", "ʋ": "v", "ɨ": "ᵻ", "ʉ": "u", "ø": "ɜ", "œ": "ɜ", "ɶ": "a", "ɯ": "u",
    "ɤ": "ʌ", "ɵ": "ə", "ɘ": "ə", "ɞ": "ɜ", "ʏ": "ɪ", "ɟ": "ɡ", "ɕ": "ʃ", "ʑ": "ʒ", "ʂ": "ʃ",
    "ʐ": "ʒ", "ʈ": "t", "ɖ": "d", "ɭ": "l", "ɳ": "n", "ɽ": "ɾ", "ɗ": "d", "ɓ": "b", "ʝ": "j",
    "ɦ": "h", "ħ": "h", "ç": "h", "ɬ": "l", "ɒ": "ɑ", "ɱ": "m", "ˑ": "ː", "ʷ": "w",
    "ʰ": "", "͡": "", "˞": "",
    "‘": "'", "’": "'", "“": '"', "”": '"', "«": '"', "»": '"', "–": "—", "\t": " ", "\n": " ",
}


class UnknownSymbolWarning(UserWarning):
    """A symbol outside the table was mapped to a near one or dropped."""


@dataclass(frozen=True)
class SymbolTable:
    """An ordered tuple of one-character symbols; a symbol's id is its index. Id 0 is padding."""

    symbols: tuple[str, ...]
    version: int = 1

    def __post_init__(self):
        if not self.symbols or self.symbols[0] != PAD:
            raise ValueError(f"The first symbol must be the pad symbol {PAD!r}.")
        if any(len(s) != 1 for s in self.symbols):
            raise ValueError("Every symbol must be a single character.")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("The symbol table holds duplicates.")

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def pad_id(self) -> int:
        return 0

    @cached_property
    def _ids(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.symbols)}

    def encode(self, seq: str) -> list[int]:
        """Symbol ids of ``seq``; unknown symbols are mapped or dropped (warned once each)."""
        ids = []
        for char in seq:
            if char in self._ids:
                ids.append(self._ids[char])
            else:
                ids.extend(self._ids[c] for c in _substitute(char, frozenset(self.symbols)))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The symbols of ``ids`` (ints, or a 1-D tensor/array), padding left out."""
        out = []
        for i in map(int, ids):
            if not 0 <= i < len(self.symbols):
                raise ValueError(f"Symbol id {i} is outside the table of {len(self.symbols)}.")
            if i != self.pad_id:
                out.append(self.symbols[i])
        return "".join(out)

    def to_dict(self) -> dict:
        return {"version": self.version, "symbols": list(self.symbols)}

    @classmethod
    def from_dict(cls, d: dict) -> SymbolTable:
        if set(d) != {"version", "symbols"}:
            raise ValueError(f"A symbol table dict has keys version and symbols, got {sorted(d)}.")
        return cls(symbols=tuple(d["symbols"]), version=int(d["version"]))


@functools.cache
def _substitute(char: str, known: frozenset[str]) -> str:
    """The in-table replacement for ``char`` (maybe empty), warning once per symbol."""
    if char.lower() in known:
        return char.lower()
    near = NEAR.get(char)
    if near is None:
        near = "".join(c.lower() for c in unicodedata.normalize("NFKD", char)
                       if c.lower() in known)
    near = "".join(c for c in near if c in known)
    what = f"mapped to {near!r}" if near else "dropped"
    warnings.warn(f"Symbol {char!r} (U+{ord(char):04X}) is not in the symbol table; {what}.",
                  UnknownSymbolWarning, stacklevel=3)
    return near


SYMBOLS = SymbolTable(tuple(PAD + PUNCTUATION + SPACE + LETTERS + IPA))
