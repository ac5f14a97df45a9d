"""Split long text into sentences for synthesis, one acoustic-model call per sentence."""

from __future__ import annotations

import re

from metatts.text.abbreviations import PREFIXES
from metatts.text.errors import TextError
from metatts.text.normalize import dropped_symbols

_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_CLAUSE = re.compile(r"[,;:—]\s")


def _ends_sentence(before: str, mark: str, after: str) -> bool:
    """Whether the mark after ``before`` ends a sentence, given the text ``after`` it."""
    if not after.strip():
        return False  # the end of the text closes the last sentence anyway
    if mark[0] in "!?":
        return True
    if not re.match(r"\s*[\"'“‘(\[]?[A-Z0-9]", after):
        return False  # "e.g. this", "3 p.m. today", "wait... what": a lower-case word goes on
    word = re.sub(r"^[\"'“‘(\[]+", "", before.rsplit(maxsplit=1)[-1]) if before.strip() else ""
    if word in PREFIXES or word.lower() in {"vs", "e.g", "i.e", "approx"}:
        return False  # "Dr. Smith", "No. 5"
    return not re.fullmatch(r"[A-Z]|(?:[A-Za-z]\.)+[A-Za-z]", word)  # "J. K. Rowling", "U.S. Army"


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Cut ``sentence`` at the last clause mark, else the last space, before ``max_chars``."""
    parts = []
    while len(sentence) > max_chars:
        head = sentence[: max_chars + 1]
        cuts = [m.end() for m in _CLAUSE.finditer(head)] or [head.rfind(" ") + 1]
        cut = cuts[-1] if cuts[-1] > 0 else max_chars
        parts.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    return parts + [sentence]


def split_sentences(text: str, max_chars: int | None = None) -> list[str]:
    """Sentences of ``text`` in order; abbreviations ("Dr.", "e.g.") and initials do not end one.

    Paragraph breaks (blank lines) always end a sentence. With ``max_chars``, longer sentences are
    cut at clause marks or spaces. Raises :class:`TextError` if no sentence has a word in it.
    """
    if not isinstance(text, str):
        raise TextError(f"Expected text as a str, got {type(text).__name__}.")
    sentences = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        start = 0
        for match in _BOUNDARY.finditer(paragraph):
            before, after = paragraph[start:match.start()], paragraph[match.end():]
            if _ends_sentence(before, match.group(0), after):
                sentences.append(paragraph[start:match.end()].strip())
                start = match.end()
        sentences.append(paragraph[start:].strip())
    sentences = [s for s in sentences if any(c.isalnum() for c in s)]
    if max_chars is not None:
        if max_chars < 1:
            raise ValueError(f"max_chars must be positive, got {max_chars}.")
        sentences = [part for s in sentences for part in _split_long(s, max_chars)]
    if not sentences:
        raise TextError(f"Nothing to speak in {text!r}: it has no words" + (
            " (emoji and symbols are not read aloud; write what they say in words)."
            if dropped_symbols(text) else "."))
    return sentences
