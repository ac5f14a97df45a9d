"""English text normalization: what a reader would say, written out in words.

``normalize_text("Dr. Smith paid $3.50 at 10:30 on the 21st.")``
-> ``"Doctor Smith paid three dollars and fifty cents at ten thirty on the twenty first."``

Numbers, ordinals, currency, percentages, years and decades, clock times, decimals, negative
numbers and common abbreviations are expanded; unicode quotes and dashes are folded; symbols that
cannot be spoken (emoji, other scripts, markup) are dropped; punctuation is tidied so that each
pause is one mark followed by one space. Accented Latin letters are kept (espeak reads "résumé").
"""

from __future__ import annotations

import re
import unicodedata

from metatts.text import number_words
from metatts.text.abbreviations import ABBREVIATIONS, CASE_INSENSITIVE, PREFIXES
from metatts.text.errors import TextError

PUNCTUATION = ",.!?;:…"  # pause marks kept in normalized text (besides ' and - inside words)

_UNICODE = str.maketrans({
    **dict.fromkeys("‘’‚‛′`´ʼʻ", "'"),
    **dict.fromkeys("“”„‟″«»", '"'),
    **dict.fromkeys("‐‑‒−", "-"),
    **dict.fromkeys("–—―", "—"),
})

_SYMBOLS = {"&": " and ", "@": " at ", "+": " plus ", "=": " equals ", "%": " percent ",
            "°": " degrees ", "/": " slash ", "⁄": " over "}  # ⁄ from NFKC of ½

_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALES = "thousand|million|billion|trillion"


def _period_ends_sentence(text: str, end: int) -> bool:
    """True when the text ends at ``end`` or a capitalized word follows."""
    return re.match(r"\s*(?:$|[\"']?[A-Z])", text[end:]) is not None


def _abbreviation(match: re.Match) -> str:
    text, word = match.string, match.group(1)
    key = next(k for k in ABBREVIATIONS if k.lower() == word.lower())
    after, before = text[match.end():], text[:match.start()]
    if (key != word and key not in CASE_INSENSITIVE) or (
            key == "No" and not re.match(r"\s*\d", after)):
        return match.group(0)
    spoken = ABBREVIATIONS[key]
    next_capitalized = re.match(r"\s*[A-Z]", after) is not None
    if key == "St" and not next_capitalized:
        spoken = "Street"  # "Main St." vs "St. James"
    if key == "Dr" and not next_capitalized and re.search(r"\b[A-Z]\w*\s*$", before):
        spoken = "Drive"  # "Mulholland Dr." vs "Dr. Who"
    prefix = key in PREFIXES and spoken not in ("Street", "Drive")
    if match.group(0).endswith(".") and not prefix and _period_ends_sentence(
            text, match.end()):
        spoken += "."
    return spoken + " "


def _initialism(match: re.Match) -> str:
    """'U.S.A.' -> 'USA' (espeak spells runs of capitals); keeps a final period at the end."""
    at_end = re.fullmatch(r"\s*", match.string[match.end():]) is not None
    return match.group(0).replace(".", "") + ("." if at_end else "")


_ABBREVIATION = re.compile(
    r"(?<![\w.])({})\.".format("|".join(map(re.escape, sorted(ABBREVIATIONS, key=len)[::-1]))),
    flags=re.IGNORECASE)


def _expand_abbreviations(text: str) -> str:
    text = _ABBREVIATION.sub(_abbreviation, text)
    text = re.sub(r"\b(Mr|Mrs|Ms|Dr)\b(?=\s+[A-Z])", _abbreviation, text)  # British "Mr Smith"
    return re.sub(r"\b(?:[A-Z]\.){2,}", _initialism, text)


_MERIDIEM = r"([ap])\.?m\b\.?"  # am, a.m., PM, p.m.


def _meridiem(match: re.Match, letter: str | None) -> str:
    if not letter:
        return ""
    spoken = " AM" if letter in "aA" else " PM"
    ends = match.group(0).endswith(".") and _period_ends_sentence(match.string, match.end())
    return spoken + ("." if ends else "")


def _time(match: re.Match) -> str:
    hours, minutes, seconds, letter = match.groups()
    if int(hours) > 24 or int(minutes) > 59 or (seconds and int(seconds) > 59):
        return match.group(0)
    spoken = number_words.clock(hours, minutes)
    if seconds:
        spoken += f" and {number_words.cardinal(str(int(seconds)))} seconds"
    return spoken + _meridiem(match, letter)


def _expand_times(text: str) -> str:
    text = re.sub(rf"\b(\d{{1,2}}):(\d{{2}})(?::(\d{{2}}))?(?:\s?{_MERIDIEM})?", _time, text,
                  flags=re.IGNORECASE)
    return re.sub(rf"\b(\d{{1,2}})\s?{_MERIDIEM}",
                  lambda m: number_words.cardinal(m.group(1)) + _meridiem(m, m.group(2)),
                  text, flags=re.IGNORECASE)


def _decade(match: re.Match) -> str:
    century, decade = match.group(1), match.group(2)
    if not century:
        return number_words.plural(number_words.cardinal(decade + "0"))
    if decade == "0":
        return "two thousands" if century == "20" else number_words.cardinal(century) + " hundreds"
    return number_words.plural(number_words.year(century + decade + "0"))


def _integer(match: re.Match) -> str:
    text = match.group(0)
    if re.fullmatch(r"1[1-9]\d\d|20\d\d", text):
        return f" {number_words.year(text)} "
    return f" {number_words.number(text)} "


def _expand_numbers(text: str) -> str:
    text = re.sub(r"(?<![\w.])-(?=[$£€¥]?\.?\d)", "minus ", text)
    text = re.sub(rf"([$£€¥])\s?({_NUMBER})(?:\s?({_SCALES})\b)?",
                  lambda m: number_words.money(m.group(1), m.group(2), m.group(3) or ""), text)
    text = re.sub(rf"({_NUMBER})\s?%", lambda m: f"{number_words.number(m.group(1))} percent", text)
    text = re.sub(r"(?<![\w'])'?(\d\d)?(\d)0'?s\b", _decade, text)
    text = re.sub(r"\b(\d{1,3}(?:,\d{3})+|\d+)(st|nd|rd|th)\b",
                  lambda m: number_words.ordinal(m.group(1)), text, flags=re.IGNORECASE)
    text = re.sub(r"\b(\d+)\s?—\s?(?=\d)|\b(\d{4})-(?=\d{4}\b)", r"\1\2 to ", text)
    text = re.sub(r"#(?=\d)", "number ", text)
    text = re.sub(r"(?<=\w)\.(?=[a-z])", " dot ", text)  # example.com
    return re.sub(rf"(?<!\d)(?:{_NUMBER})|\.\d+", _integer, text)


def dropped_letters(text: str) -> str:
    """The runs of letters in ``text`` that :func:`normalize_text` leaves out because the front
    end reads Latin script only ("日本" of "Hello 日本 world."), in order, each once, joined by
    spaces; "" if none: what a caller should tell the user was not spoken."""
    text = unicodedata.normalize("NFKC", text).translate(_UNICODE)
    runs, run = [], ""
    for c in text + " ":
        if c.isalpha() and not _is_speakable_char(c):
            run += c
        elif run and unicodedata.category(c).startswith("M"):  # a vowel sign, virama...
            run += c
        elif run:
            runs.append(run)
            run = ""
    return " ".join(dict.fromkeys(runs))


def dropped_symbols(text: str) -> str:
    """The emoji and other symbols in ``text`` that :func:`normalize_text` leaves out unspoken
    ("🎉", "♥", "€" without an amount, "×"), in order, each once, joined by spaces; "" if none:
    what a caller should tell the user was not spoken. ASCII marks ("*", "#", "_", "|") are
    markup, left out without a word, as are quotes and dashes; symbols it reads ("%", "&", "°",
    "$5") are not named."""
    runs, run = [], ""
    for c in _spelled_out(text) + " ":
        category = unicodedata.category(c) if ord(c) > 127 else ""
        if category.startswith("S") or (run and category in ("Mn", "Me", "Cf")):
            run += c  # a symbol, or what joins it: a skin tone (Sk), a joiner, a keycap
        elif run:
            runs.append(run)
            run = ""
    return " ".join(dict.fromkeys(runs))


def _is_speakable_char(char: str) -> bool:
    if char.isspace() or char in PUNCTUATION or char in "'-":
        return True
    return char.isalpha() and unicodedata.name(char, "").startswith("LATIN")


def _strongest(marks: str) -> str:
    for mark in "?!….;:":
        if mark in marks:
            return mark
    return ","


def _tidy_punctuation(text: str) -> str:
    text = re.sub(r"(?<!\w)'|'(?!\w)|(?<!\w)-|-(?!\w)", " ", text)  # quotes, stray hyphens
    text = re.sub(r"\.\s?\.\s?\.", "…", text)
    text = re.sub(rf"\s*([{PUNCTUATION}](?:\s*[{PUNCTUATION}])*)",
                  lambda m: _strongest(m.group(1)) + " ", text)
    text = re.sub(rf"^[\s{PUNCTUATION}]+|[\s,;:]+$", "", text)
    return re.sub(r"\s+", " ", text).strip()


def normalize_text(text: str) -> str:
    """Return ``text`` as words a reader would say, with tidy punctuation (may be empty)."""
    if not isinstance(text, str):
        raise TextError(f"Expected text as a str, got {type(text).__name__}.")
    text = "".join(c if _is_speakable_char(c) else " " for c in _spelled_out(text))
    return _tidy_punctuation(text)


def _spelled_out(text: str) -> str:
    """``text`` with numbers, abbreviations and the symbols read aloud written as words, and
    brackets and dashes as pauses: what :func:`normalize_text` keeps the speakable letters and
    marks of."""
    text = re.sub(r"(\d)([\u00bc-\u00be\u2150-\u215e])", r"\1 and \2", text)  # 2¾, before NFKC
    text = unicodedata.normalize("NFKC", text).translate(_UNICODE)
    text = re.sub(r"([=+*_~#/\\|<>^-])\1{2,}", " ", text)  # rules and banners: "=====", "---"
    text = text.replace("--", "—")
    text = _expand_abbreviations(text)
    text = _expand_times(text)
    text = _expand_numbers(text)
    for symbol, spoken in _SYMBOLS.items():
        text = text.replace(symbol, spoken)
    return re.sub(r"[()\[\]{}<>—]|\s-\s", ", ", text)  # brackets and dashes are pauses
