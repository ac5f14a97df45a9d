"""The catalogue of offline voices: who each one is, its licence, and which split it belongs to.

A *speaker* is a person (or, for formant synthesis and Kokoro blends, a synthetic identity); one
recorded person can be behind several engines and is then one speaker (flite ``slt`` and festival's
``cmu_us_slt_arctic_hts`` are both the CMU ARCTIC speaker "slt"; flite ``kal``/``kal16`` and
festival ``kal_diphone`` are Kevin Lenzo). The split is fixed per speaker, so train, val and test
never share a speaker, and two whole engines (Piper and Pico) are only ever heard in test.

The list was screened on this project's machines: Whisper base gets fewer than half of every kept
voice's words wrong (Kokoro, Piper, Pico: under 15 %; espeak-ng and MBROLA: 12-42 %), and no two
speakers have a mean ECAPA cosine above 0.71 (see the corpus's report.json).
"""

from __future__ import annotations

import random

from metatts.corpus import kokoro_packs
from metatts.corpus.engines import Voice

FLITE = "BSD-style (CMU Flite / CMU ARCTIC)"
FESTIVAL = "BSD-style (Festival diphone voice, CSTR/CMU)"
HTS = "BSD-style (CMU ARCTIC slt, HTS voice)"
MBROLA = "MBROLA voice licence: non-commercial, non-military use, only with the mbrola program"
PICO = "Apache-2.0 (SVOX Pico)"
ESPEAK = "GPL-3.0-or-later engine (espeak-ng formant synthesis)"
PIPER = "voice dataset CC0-1.0 (en_US-joe-medium model card); Piper engine GPL-3.0, run separately"
KOKORO = "Apache-2.0 (Kokoro-82M)"
KOKORO_EN = "Apache-2.0 (Kokoro-82M voice packs, npm kokoro-js@1.2.1)"

# --- natural voices: Kokoro's 28 English packs and seeded blends of them -------------------------
# Splits by base voice, fixed before any measurement. Test-only voices are never trained on and
# never a blend parent: two US women, three US men, a UK woman and a UK man (seven, so that the
# benchmark's full preset has 7 x 5 sentences x 3 draws = 105 clips per cell), none of them the
# highest-graded pack of its kind (af_heart, af_bella, bf_emma stay in training). bm_fable rather
# than bm_george is held out because george's nearest pack (bm_daniel, style cosine 0.84) would
# make it an easy test voice. Validation: one voice of each kind.
NATURAL_TEST = ("af_nicole", "af_sarah", "am_michael", "am_fenrir", "bf_isabella", "bm_fable",
                "am_echo")
NATURAL_VAL = ("af_kore", "am_puck", "bf_lily", "bm_lewis")
NATURAL_TRAIN = tuple(v for v in kokoro_packs.ENGLISH if v not in NATURAL_TEST + NATURAL_VAL)
VIRTUAL_SPEAKERS = 320  # blended speakers made from NATURAL_TRAIN voices
MIN_WEIGHT = 0.2  # every parent's share of a blend: a lower one leaves the blend its other parent
SPEED_RANGE = (0.88, 1.12)  # Kokoro speaking rate of a blended speaker
# Vocal-tract and pitch shifts of a blended speaker's audio (Praat "Change gender"). Measured
# (benchmarks/voice_shift.py, 4 training voices x 3 sentences per cell): over formant 0.85-1.15 and
# pitch x0.80-1.25, DNSMOS OVRL stays within 0.12 of the unshifted audio (3.19-3.34 vs 3.31) and
# Whisper base WER at 0; the formant ratio moves a voice most (ECAPA to the unshifted clip 0.5 at
# 0.90 or 1.10), pitch least (0.88-0.93). The ranges keep inside the measured grid.
FORMANT_RANGE = (0.88, 1.12)
PITCH_RANGE = (0.85, 1.18)
UNSHIFTED_SHARE = 0.15  # of blended speakers keep Kokoro's own pitch and formants

# espeak-ng formant voices (US accent; the accent barely changes ECAPA identity, the variant does):
# the ten of 50 tried that Whisper understood best with pairwise ECAPA cosine below 0.7, less
# "paul", which Whisper base got 69 % of words wrong in the first full build.
ESPEAK_VARIANTS = ("m3", "edward", "m8", "m5", "m7", "f2", "m2", "m1", "f5")
KOKORO_STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
# Blends of two styles: new voices between their parents (ECAPA 0.7-0.8 to each parent).
_KOKORO_BLENDS = (
    "0.5*jf_alpha+0.5*jm_kumo", "0.5*jf_nezumi+0.5*jm_kumo", "0.5*jf_gongitsune+0.5*jf_tebukuro",
    "0.5*jf_alpha+0.5*jf_nezumi", "0.3*jf_tebukuro+0.7*jm_kumo",
)


def _blend_name(voice_id: str) -> str:
    return "kokoro_" + "_".join(term.split("*")[1].split("_")[1] for term in voice_id.split("+"))


def natural_name(pack: str) -> str:
    return f"kokoro_en_{pack}"


def virtual_voices(count: int = VIRTUAL_SPEAKERS, seed: int = 0) -> tuple[Voice, ...]:
    """``count`` blended speakers, a pure function of ``seed``: each mixes 2 or 3 distinct
    training packs with convex weights of at least MIN_WEIGHT, speaks at its own rate and, for
    most, has its own formant and pitch shift."""
    rng = random.Random(f"metatts-virtual:{seed}")
    voices = []
    for i in range(count):
        parents = rng.sample(NATURAL_TRAIN, rng.choice((2, 3)))
        spare = 1.0 - MIN_WEIGHT * len(parents)
        cuts = sorted(rng.random() for _ in parents[1:])
        shares = [b - a for a, b in zip([0.0, *cuts], [*cuts, 1.0], strict=True)]
        weights = [round(MIN_WEIGHT + spare * s, 3) for s in shares]
        weights[-1] = round(1.0 - sum(weights[:-1]), 3)
        voice_id = "+".join(f"{w}*{p}" for w, p in zip(weights, parents, strict=True))
        speed = round(rng.uniform(*SPEED_RANGE), 3)
        formant, pitch = 1.0, 1.0
        if rng.random() >= UNSHIFTED_SHARE:
            formant, pitch = round(rng.uniform(*FORMANT_RANGE), 3), round(rng.uniform(*PITCH_RANGE), 3)
        voices.append(Voice("kokoro-en", voice_id, f"kokoro_mix_{i:04d}", KOKORO_EN, speed=speed,
                            formant=formant, pitch=pitch, group="natural"))
    return tuple(voices)


SPAN_PREFIX = "kokoro_span_"


def span_voices(count: int = 0, seed: int = 0) -> tuple[Voice, ...]:
    """``count`` speakers drawn from the span of the training and non-English packs
    (:func:`metatts.corpus.kokoro_packs.span_style`; voice id ``span<seed>:<index>``), half with a
    US and half with a UK accent, each at its own rate; training split, no audio shift."""
    rng = random.Random(f"metatts-span:{seed}")
    return tuple(Voice("kokoro-span", f"span{seed}:{i}", f"{SPAN_PREFIX}{i:04d}", KOKORO_EN,
                       speed=round(rng.uniform(*SPEED_RANGE), 3), group="natural")
                 for i in range(count))


def parse_span(voice_id: str) -> tuple[int, int]:
    """"span0:12" -> (seed 0, index 12)."""
    seed, _, index = voice_id.removeprefix("span").partition(":")
    return int(seed), int(index)


def span_accent(index: int) -> str:
    """Kokoro's phoneme language of span voice ``index``: even US, odd UK."""
    return "en-gb" if index % 2 else "en-us"


def is_drawn(engine: str, voice_id: str) -> bool:
    """A made-up natural voice: a blend of packs (voice id with "+") or a span voice."""
    return "+" in voice_id or engine == "kokoro-span"


def natural_catalogue(virtual: int = VIRTUAL_SPEAKERS, seed: int = 0,
                      span: int = 0) -> tuple[Voice, ...]:
    """The 28 English base voices (test and validation first), ``virtual`` blends and ``span``
    span voices."""
    base = [Voice("kokoro-en", pack, natural_name(pack), KOKORO_EN, group="natural")
            for pack in (*NATURAL_TEST, *NATURAL_VAL, *NATURAL_TRAIN)]
    return (*base, *virtual_voices(virtual, seed), *span_voices(span, seed))


def catalogue(virtual: int = VIRTUAL_SPEAKERS, seed: int = 0, span: int = 0) -> tuple[Voice, ...]:
    """Every voice the builder knows, in a fixed order: the natural voices, then the engines."""
    return (*natural_catalogue(virtual, seed, span), *engine_catalogue())


def engine_catalogue() -> tuple[Voice, ...]:
    """The previous corpus's voices (Debian engines, Piper, Kokoro's Japanese styles)."""
    voices = [
        Voice("flite", "kal", "kal", FLITE),
        Voice("flite", "kal16", "kal", FLITE),
        Voice("festival", "voice_kal_diphone", "kal", FESTIVAL),
        Voice("flite", "awb", "awb", FLITE),
        Voice("flite", "rms", "rms", FLITE),
        Voice("flite", "slt", "slt", FLITE),
        Voice("festival", "voice_cmu_us_slt_arctic_hts", "slt", HTS),
        Voice("festival", "voice_ked_diphone", "ked", FESTIVAL),
        Voice("festival", "voice_rab_diphone", "rab", FESTIVAL),
        Voice("festival", "voice_don_diphone", "don", FESTIVAL),
        # mbrola us3 is left out: Whisper base got about half its words wrong (48 %, 53 %).
        *(Voice("mbrola", f"mb-{v}", f"mbrola_{v}", MBROLA) for v in ("us1", "us2", "en1")),
        Voice("pico", "en-US", "pico_en_us", PICO),
        Voice("pico", "en-GB", "pico_en_gb", PICO),
        Voice("piper", "joe", "piper_joe", PIPER),
        *(Voice("kokoro", s, f"kokoro_{s}", KOKORO) for s in KOKORO_STYLES),
        *(Voice("kokoro", b, _blend_name(b), KOKORO) for b in _KOKORO_BLENDS),
        *(Voice("espeak-ng", f"en-us+{v}", f"espeak_{v}", ESPEAK) for v in ESPEAK_VARIANTS),
    ]
    return tuple(voices)


# Held out whole: every Piper and Pico voice, plus one speaker of most other engines. The shipped
# evaluation set (metatts/eval_speakers) is made of the test speakers.
TEST_SPEAKERS = frozenset({"piper_joe", "pico_en_us", "pico_en_gb", "rab", "mbrola_us1",
                           "kokoro_gongitsune_tebukuro", "espeak_f2",
                           *map(natural_name, NATURAL_TEST)})
VAL_SPEAKERS = frozenset({"ked", "kokoro_alpha_nezumi", "espeak_m8",
                          *map(natural_name, NATURAL_VAL)})


REAL_PREFIX = "real_"  # recorded people in the shipped evaluation set: test only, never a corpus voice


def split_of(speaker: str) -> str:
    """The split a speaker belongs to: "test", "val" or "train" (the default for new speakers)."""
    if speaker in TEST_SPEAKERS or speaker.startswith(REAL_PREFIX):
        return "test"
    return "val" if speaker in VAL_SPEAKERS else "train"
