"""English abbreviations: how they are spoken, and which ones never end a sentence."""

from __future__ import annotations

# Written form without its final period -> spoken form. Matched case-sensitively, except for the
# lower-case Latin ones (vs, etc, e.g, i.e, approx), which match in any case.
ABBREVIATIONS: dict[str, str] = {
    "Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Dr": "Doctor", "Prof": "Professor",
    "St": "Saint", "Jr": "Junior", "Sr": "Senior", "Mt": "Mount", "Ft": "Fort",
    "Capt": "Captain", "Col": "Colonel", "Gen": "General", "Lt": "Lieutenant",
    "Sgt": "Sergeant", "Rev": "Reverend", "Hon": "Honorable", "Gov": "Governor",
    "Sen": "Senator", "Rep": "Representative", "Pres": "President",
    "Ave": "Avenue", "Rd": "Road", "Blvd": "Boulevard", "Ln": "Lane",
    "Inc": "Incorporated", "Ltd": "Limited", "Corp": "Corporation", "Co": "Company",
    "Dept": "Department", "Univ": "University", "No": "number",
    "Jan": "January", "Feb": "February", "Mar": "March", "Apr": "April", "Jun": "June",
    "Jul": "July", "Aug": "August", "Sep": "September", "Sept": "September",
    "Oct": "October", "Nov": "November", "Dec": "December",
    "vs": "versus", "etc": "et cetera", "approx": "approximately",
    "e.g": "for example", "i.e": "that is",
}

CASE_INSENSITIVE = frozenset({"vs", "etc", "approx", "e.g", "i.e"})

# Abbreviations written before a name or a number: a period after them does not end a sentence.
PREFIXES = frozenset({
    "Mr", "Mrs", "Ms", "Dr", "Prof", "St", "Mt", "Ft", "Capt", "Col", "Gen", "Lt", "Sgt",
    "Rev", "Hon", "Gov", "Sen", "Rep", "Pres", "No", "vs", "e.g", "i.e", "approx",
})
