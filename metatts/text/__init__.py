"""Text front end: English normalization, espeak-ng phonemes, and the fixed symbol table.

    >>> normalize_text("Dr. Smith paid $3.50.")
    'Doctor Smith paid three dollars and fifty cents.'
    >>> SYMBOLS.decode(text_to_ids("Hi!", mode="characters"))
    'hi!'
"""

from metatts.text.encode import MODES, text_to_ids, to_characters
from metatts.text.errors import TextError
from metatts.text.normalize import dropped_letters, dropped_symbols, normalize_text
from metatts.text.phonemes import EspeakUnavailableError, espeak_available, phonemize
from metatts.text.sentences import split_sentences
from metatts.text.symbols import SYMBOLS, SymbolTable, UnknownSymbolWarning

__all__ = [
    "MODES", "SYMBOLS", "EspeakUnavailableError", "SymbolTable", "TextError",
    "UnknownSymbolWarning", "dropped_letters", "dropped_symbols", "espeak_available",
    "normalize_text", "phonemize", "split_sentences", "text_to_ids", "to_characters",
]
