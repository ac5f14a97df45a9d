"""English text to IPA phonemes with espeak-ng (en-us), punctuation and word boundaries kept.

espeak-ng comes from the ``espeakng-loader`` wheel (library and data inside it; no system install,
works offline); a system espeak-ng is used when that package is missing. phonemizer loads a private
copy of the library for each backend, and the backend is built lazily once per process, so worker
processes (fork or spawn) each get their own; a lock serializes threads within one process.
"""

from __future__ import annotations

import functools
import logging
import threading

from metatts.text.errors import TextError
from metatts.text.normalize import dropped_letters, normalize_text

LANGUAGE = "en-us"
_LOCK = threading.Lock()  # espeak-ng keeps global state: one call at a time per process

_INSTALL = ("Install it with `pip install phonemizer==3.4.0 espeakng-loader==0.2.4`, "
            "or use mode='characters'.")


class EspeakUnavailableError(RuntimeError):
    """espeak-ng (through phonemizer) cannot be loaded."""


@functools.cache
def _backend():
    try:
        from phonemizer.backend import EspeakBackend
        from phonemizer.backend.espeak.wrapper import EspeakWrapper
    except ImportError as e:
        raise EspeakUnavailableError(f"Phoneme mode needs phonemizer ({e}). {_INSTALL}") from e
    try:
        import espeakng_loader
    except ImportError:
        pass  # fall back to a system espeak-ng, found by phonemizer
    else:
        EspeakWrapper.set_library(espeakng_loader.get_library_path())
        EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
    # a private logger: phonemizer reports "words count mismatch" at WARNING, which is noise here
    logger = logging.Logger("metatts.text.espeak", level=logging.ERROR)
    try:
        return EspeakBackend(LANGUAGE, preserve_punctuation=True, with_stress=True,
                             language_switch="remove-flags", logger=logger)
    except RuntimeError as e:
        raise EspeakUnavailableError(f"espeak-ng could not be loaded: {e}. {_INSTALL}") from e


def espeak_available() -> bool:
    """True when phoneme mode works in this process."""
    try:
        _backend()
    except EspeakUnavailableError:
        return False
    return True


def _speakable(text: str, index: int) -> str:
    normalized = normalize_text(text)
    if not any(c.isalpha() for c in normalized):
        where = f" (item {index})" if index >= 0 else ""
        foreign = dropped_letters(text)
        why = (f"its only words, {foreign}, are not in Latin letters, and the model reads "
               "English in Latin letters; spell them out in Latin letters" if foreign else
               "it has no words after normalization (empty, or only punctuation, symbols or "
               "emoji)")
        raise TextError(f"Nothing to speak in {text!r}{where}: {why}.")
    return normalized


def phonemize(text: str | list[str]) -> str | list[str]:
    """IPA for ``text`` (normalized first), words separated by spaces, punctuation kept.

    A list is phonemized in one espeak call (much faster than one call per item).
    Raises :class:`TextError` if any item has nothing to speak.
    """
    single = isinstance(text, str)
    items = [text] if single else list(text)
    if not items:
        return []
    # an empty or punctuation-only line would shift phonemizer's outputs: refuse those up front
    normalized = [_speakable(t, -1 if single else i) for i, t in enumerate(items)]
    backend = _backend()
    from phonemizer.separator import Separator

    with _LOCK:
        phones = backend.phonemize(normalized, separator=Separator(phone="", word=" "),
                                   strip=True, njobs=1)
    if len(phones) != len(items):
        raise RuntimeError(f"espeak-ng returned {len(phones)} lines for {len(items)} texts.")
    phones = [" ".join(p.split()) for p in phones]
    for item, p in zip(items, phones):
        if not p.strip(",.!?;:… "):
            raise TextError(f"espeak-ng produced no phonemes for {item!r}.")
    return phones[0] if single else phones
