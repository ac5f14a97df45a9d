"""Numbers as English words (US style: no "and" inside a number, no commas, no hyphens).

Thin wrappers over ``num2words``; every function takes the digits as they were written so that
decimals keep their exact digits ("3.10" is "three point one zero").
"""

from __future__ import annotations

import re

from num2words import num2words

MAX_DIGITS = 15  # longer digit strings (ids, phone numbers) are read digit by digit

_DIGITS = "zero one two three four five six seven eight nine".split()


def _clean(words: str) -> str:
    words = words.replace(",", "").replace("-", " ")
    return re.sub(r"\band\b ", "", words).strip()


def digits(text: str) -> str:
    """'007' -> 'zero zero seven'."""
    return " ".join(_DIGITS[int(d)] for d in text if d.isdigit())


def cardinal(text: str) -> str:
    """'1,234' -> 'one thousand two hundred thirty four'; over MAX_DIGITS digits, digit by digit."""
    text = text.replace(",", "")
    if len(text) > MAX_DIGITS or (len(text) > 1 and text.startswith("0")):
        return digits(text)
    return _clean(num2words(int(text)))


def ordinal(text: str) -> str:
    """'21' -> 'twenty first'."""
    text = text.replace(",", "")
    if len(text) > MAX_DIGITS:
        return digits(text) + "th"
    return _clean(num2words(int(text), to="ordinal"))


def year(text: str) -> str:
    """'1984' -> 'nineteen eighty four'; '2005' -> 'two thousand five'; '1905' -> 'nineteen oh
    five'."""
    return _clean(num2words(int(text), to="year"))


def decimal(text: str) -> str:
    """'3.14' -> 'three point one four'; '.5' -> 'point five'."""
    whole, _, frac = text.replace(",", "").partition(".")
    spoken = cardinal(whole) if whole else ""
    return f"{spoken} point {digits(frac)}".strip()


def number(text: str) -> str:
    """An integer or a decimal as written: '1,000' or '2.5'."""
    return decimal(text) if "." in text else cardinal(text)


def plural(words: str) -> str:
    """Pluralize the last number word: 'nineteen ninety' -> 'nineteen nineties'."""
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return f"{head} {last}".strip()


def clock(hours: str, minutes: str) -> str:
    """'10', '30' -> 'ten thirty'; '10', '05' -> 'ten oh five'; '10', '00' -> "ten o'clock"."""
    spoken = cardinal(str(int(hours)))
    if minutes == "00":
        return f"{spoken} o'clock"
    if minutes.startswith("0"):
        return f"{spoken} oh {digits(minutes[1])}"
    return f"{spoken} {cardinal(minutes)}"


# symbol -> (singular, plural, cent singular, cent plural)
CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "sen", "sen"),
}


def money(symbol: str, amount: str, scale: str = "") -> str:
    """('$', '3.50') -> 'three dollars and fifty cents'; ('$', '2.5', 'million') -> 'two point five
    million dollars'."""
    one, many, cent, cents = CURRENCIES[symbol]
    amount = amount.replace(",", "")
    whole, _, frac = amount.partition(".")
    if scale:
        return f"{number(amount)} {scale} {many}"
    if frac and len(frac) != 2:
        return f"{decimal(amount)} {many}"
    units, hundredths = int(whole or "0"), int(frac or "0")
    parts = []
    if units or not hundredths:
        parts.append(f"{cardinal(whole or '0')} {one if units == 1 else many}")
    if hundredths:
        parts.append(f"{cardinal(str(hundredths))} {cent if hundredths == 1 else cents}")
    return " and ".join(parts)
