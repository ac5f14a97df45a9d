"""A seeded template grammar that writes English sentences for the synthetic corpus.

The word lists are written for this project to cover English phonemes broadly (including rare ones:
"measure", "treasure" for /ʒ/, "boy", "coin" for /ɔɪ/, "thin", "this" for /θ ð/) and to mix
statements, questions, commands, numbers (spelled out, so that every engine reads them the same
way and the text is the exact transcript) and names. The same seed always gives the same list.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from metatts.text import number_words

KINDS = ("statement", "question", "command", "number", "name", "long")


@dataclass(frozen=True)
class Sentence:
    text: str  # what is spoken, and the clip's transcript
    kind: str  # one of KINDS


NAMES = (
    "Amelia", "Beatrice", "Charlotte", "Douglas", "Elena", "Fiona", "George", "Harriet", "Isaac",
    "Joshua", "Kenji", "Lucia", "Marcus", "Nadia", "Oscar", "Priya", "Laura", "Ravi", "Sophie",
    "Theo", "Emily", "Victor", "Wendy", "Daniel", "Rachel", "Zoe", "Hugo", "Helen", "Roy", "Anna",
    "Jasmine", "Arthur", "Chloe", "Peter", "Gareth", "Mei", "Samuel", "Vanessa",
)
SURNAMES = (
    "Walker", "Thompson", "Nakamura", "Edwards", "Fischer", "Garcia", "Kowalski", "Hughes", "Patel",
    "Johansson", "Moreau", "Chen", "Anderson", "Baker", "Murphy", "Sullivan", "Rossi", "Mitchell",
    "Dubois", "Howard", "Schmidt", "Fletcher", "Ramirez", "Vaughan",
)
CITIES = (
    "Boston", "Denver", "Glasgow", "Dublin", "Toronto", "Seattle", "Phoenix", "Madrid", "Vienna",
    "Oslo", "Nairobi", "Sydney", "Chicago", "Lisbon", "Houston", "Edinburgh", "Montreal", "Atlanta",
    "Prague", "Zurich", "Melbourne", "Cairo", "Helsinki", "Portland",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
VENUES = ("bakery", "library", "concert", "airport", "market", "theatre", "harbor", "museum",
          "station", "wedding", "hospital", "garden party")
NOUNS = (
    "book", "garden", "letter", "window", "bicycle", "kettle", "jacket", "ladder", "mirror",
    "pillow", "rocket", "bridge", "candle", "engine", "feather", "guitar", "hammer", "lantern",
    "machine", "needle", "orange", "puzzle", "quilt", "saddle", "tunnel", "umbrella", "violin",
    "wagon", "zipper", "treasure", "garage", "coin", "toy", "thermometer", "journal", "sandwich",
    "chair", "sheep", "mouse", "knife", "box", "watch", "brush", "cherry", "boat", "cushion",
    "envelope", "oyster", "igloo", "anchor", "blanket", "parcel", "compass", "telescope",
    "sweater", "bucket", "drawer", "map", "bottle", "shovel",
)
PLURALS = {"sheep": "sheep", "mouse": "mice", "knife": "knives"}
ADJECTIVES = (
    "bright", "quiet", "heavy", "narrow", "ancient", "golden", "smooth", "shiny", "broken",
    "gentle", "curious", "enormous", "tiny", "purple", "frozen", "hollow", "joyful", "muddy",
    "noisy", "polished", "rough", "soggy", "thick", "thin", "usual", "vivid", "wooden", "yellow",
    "fragile", "crooked", "orange", "elegant", "awkward", "cheap", "strange", "huge", "dusty",
    "squeaky", "leather", "velvet",
)
VERBS = (  # (base, past)
    ("carry", "carried"), ("paint", "painted"), ("fix", "fixed"), ("find", "found"),
    ("bring", "brought"), ("watch", "watched"), ("clean", "cleaned"), ("borrow", "borrowed"),
    ("measure", "measured"), ("throw", "threw"), ("choose", "chose"), ("push", "pushed"),
    ("open", "opened"), ("wrap", "wrapped"), ("sell", "sold"), ("hide", "hid"), ("lift", "lifted"),
    ("polish", "polished"), ("deliver", "delivered"), ("draw", "drew"), ("weigh", "weighed"),
    ("sketch", "sketched"), ("buy", "bought"), ("mend", "mended"), ("examine", "examined"),
    ("juggle", "juggled"), ("shake", "shook"), ("enjoy", "enjoyed"), ("rescue", "rescued"),
    ("squeeze", "squeezed"),
)
PLACES = (
    "in the kitchen", "near the station", "behind the old barn", "under the stairs",
    "at the edge of the forest", "on the top shelf", "beside the harbor", "across the street",
    "inside the museum", "by the window", "in the attic", "next to the fountain",
    "on the back porch", "through the gate", "beneath the bridge", "at the bottom of the lake",
)
TIMES = (
    "this morning", "last Thursday", "after lunch", "before sunrise", "every weekend",
    "yesterday evening", "in early autumn", "on Friday night", "at midnight", "during the storm",
    "last summer", "the day before yesterday", "in the middle of June", "right after breakfast",
)
FEELINGS = ("surprised", "delighted", "worried", "annoyed", "thrilled", "puzzled", "relieved")
UNITS = ("kilograms", "meters", "miles", "minutes", "hours", "pounds", "liters", "degrees")


def _article(word: str) -> str:
    sounds_vowel = word[0] in "aeio" or (word[0] == "u" and not word.startswith(("usu", "uni")))
    return f"an {word}" if sounds_vowel else f"a {word}"


def _plural(noun: str) -> str:
    if noun in PLURALS:
        return PLURALS[noun]
    if noun.endswith(("s", "x", "sh", "ch")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _count(rng: random.Random, low: int = 2, high: int = 99) -> str:
    return number_words.cardinal(str(rng.randint(low, high)))


class _Words:
    """Random picks from the word lists, one draw per call."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def __getattr__(self, name: str) -> str:
        table = {"name": NAMES, "surname": SURNAMES, "city": CITIES, "day": WEEKDAYS,
                 "venue": VENUES, "noun": NOUNS, "adj": ADJECTIVES, "place": PLACES,
                 "time": TIMES, "feeling": FEELINGS, "unit": UNITS}
        if name not in table:
            raise AttributeError(name)
        return self.rng.choice(table[name])

    def verb(self) -> tuple[str, str]:
        return self.rng.choice(VERBS)


def _statement(w: _Words) -> str:
    (base, past), (_, past2) = w.verb(), w.verb()
    return w.rng.choice((
        f"{w.name} {past} the {w.adj} {w.noun} {w.place}.",
        f"The {w.noun} {w.place} looked {w.adj} {w.time}.",
        f"We {past} {_article(w.adj)} {w.noun} for {w.name} {w.time}.",
        f"{w.name} {past} the {w.noun}, but {w.name} {past2} the {w.adj} {w.noun}.",
        f"Nobody knew why the {w.noun} was so {w.adj}.",
        f"{w.name} and {w.name} {past} the {w.noun} together {w.time}.",
        f"If the {w.noun} is too {w.adj}, {w.name} will {base} it {w.time}.",
        f"My neighbor was {w.feeling} to see {_article(w.adj)} {w.noun} {w.place}.",
        f"The {w.adj} {w.noun} belongs to {w.name}.",
    ))


def _question(w: _Words) -> str:
    (base, past) = w.verb()
    return w.rng.choice((
        f"Did {w.name} {base} the {w.adj} {w.noun} {w.time}?",
        f"Where did you {base} the {w.noun}?",
        f"Why is the {w.noun} {w.place} so {w.adj}?",
        f"Could you {base} the {w.noun} before {w.name} arrives?",
        f"Who {past} the {w.noun} {w.place}?",
        f"Have you ever seen {_article(w.adj)} {w.noun} in {w.city}?",
        f"Which {w.noun} did {w.name} choose, the {w.adj} one or the {w.adj} one?",
        f"Is it true that {w.name} was {w.feeling} {w.time}?",
        f"What time does the {w.venue} open on {w.day}?",
    ))


def _command(w: _Words) -> str:
    (base, _) = w.verb()
    return w.rng.choice((
        f"Please {base} the {w.noun} {w.place}.",
        f"Don't forget to {base} the {w.adj} {w.noun}!",
        f"What {_article(w.adj)} {w.noun} that was!",
        f"Put the {w.noun} {w.place}, then call {w.name}.",
        f"Quickly, {base} the {w.noun} before it gets {w.adj}!",
    ))


def _number(w: _Words) -> str:
    rng = w.rng
    return rng.choice((
        (f"The train to {w.city} leaves at "
         f"{number_words.clock(str(rng.randint(1, 12)), str(rng.choice((5, 10, 15, 20, 30, 45))))}."),
        (f"{w.name} bought {_count(rng)} {_plural(w.noun)} for "
         f"{number_words.money('$', f'{rng.randint(2, 90)}.{rng.choice((0, 25, 50, 99)):02d}')}."),
        f"There are {_count(rng)} {_plural(w.noun)} {w.place}.",
        f"{w.name} was born in {number_words.year(str(rng.randint(1931, 2019)))}.",
        f"Room {_count(rng, 100, 999)} is on the {number_words.ordinal(str(rng.randint(2, 12)))} floor.",
        f"The parcel weighs about {_count(rng)} {w.unit}.",
        f"Call me back at {number_words.digits(str(rng.randint(1000000, 9999999)))}.",
        f"We drove {_count(rng, 12, 480)} miles to reach {w.city}.",
    ))


def _name(w: _Words) -> str:
    return w.rng.choice((
        f"{w.name} {w.surname} moved from {w.city} to {w.city} {w.time}.",
        f"Please give this {w.noun} to {w.name} {w.surname}.",
        f"{w.name} met {w.name} at the {w.venue} in {w.city}.",
        f"Doctor {w.surname} will see {w.name} on {w.day}.",
        f"Professor {w.surname} flew to {w.city} on {w.day} morning.",
    ))


def _clause(w: _Words) -> str:
    """A simple clause with no final mark, first word capitalized."""
    (base, past), (_, past2) = w.verb(), w.verb()
    return w.rng.choice((
        f"{w.name} {past} the {w.adj} {w.noun} {w.place}",
        f"the {w.noun} {w.place} looked {w.adj} {w.time}",
        f"we {past} {_article(w.adj)} {w.noun} for {w.name} {w.time}",
        f"my neighbor was {w.feeling} to see {_article(w.adj)} {w.noun} {w.place}",
        f"{w.name} and {w.name} {past} the {_plural(w.noun)} together",
        f"nobody could explain why the {w.noun} was so {w.adj}",
        f"the children {past} {_article(w.adj)} {w.noun} {w.place}",
        f"{w.name} {w.surname} {past2} {_article(w.adj)} {w.noun} at the {w.venue}",
        f"the old {w.noun} had been {w.place} for as long as anyone could remember",
        f"everyone at the {w.venue} in {w.city} was {w.feeling}",
        f"{w.name} promised to {base} the {w.noun} {w.time}",
        f"the rain kept falling {w.place} {w.time}",
    ))


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _long(w: _Words) -> str:
    """A long read-aloud sentence (about 15-35 words): two or three clauses joined the way
    written prose joins them, with commas where a reader would pause."""
    a, b, c = _clause(w), _clause(w), _clause(w)
    return w.rng.choice((
        f"{_cap(a)}, and {b}.",
        f"{_cap(a)}, but {b}, so {c}.",
        f"Although {a}, {b}.",
        f"When {a}, {b}, and {c}.",
        f"{_cap(a)} because {b}.",
        f"{_cap(a)} {w.time}, while {b}.",
        f"After {a}, {b}, which meant that {c}.",
        f"By the time {a}, {b}.",
        f"{_cap(a)}; {b}, and nobody was surprised that {c}.",
        f"If {a} again, {b}, and I suspect {c}.",
    ))


_MAKERS: dict[str, Callable[[_Words], str]] = {
    "statement": _statement, "question": _question, "command": _command, "number": _number,
    "name": _name, "long": _long,
}
_WEIGHTS = {"statement": 4, "question": 3, "command": 1, "number": 2, "name": 2}


def sentences(seed: int | str, count: int, long_share: float = 0.0) -> list[Sentence]:
    """``count`` different sentences, the same ones for the same ``seed``; about ``long_share``
    of them long read-aloud sentences (kind "long"). ``long_share=0`` gives the same list as
    before that kind existed."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not 0.0 <= long_share <= 1.0:
        raise ValueError(f"long_share must be in [0, 1], got {long_share}")
    rng = random.Random(f"metatts-sentences:{seed}")
    words = _Words(rng)
    kinds, weights = zip(*_WEIGHTS.items(), strict=True)
    out: list[Sentence] = []
    seen: set[str] = set()
    for _ in range(count * 50):
        if len(out) == count:
            break
        if long_share > 0 and rng.random() < long_share:
            kind = "long"
        else:
            kind = rng.choices(kinds, weights)[0]
        text = _MAKERS[kind](words)
        if text not in seen:
            seen.add(text)
            out.append(Sentence(text, kind))
    if len(out) < count:
        raise ValueError(f"the grammar could not make {count} different sentences")
    return out
