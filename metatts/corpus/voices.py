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

from metatts.corpus.engines import Voice

FLITE = "BSD-style (CMU Flite / CMU ARCTIC)"
FESTIVAL = "BSD-style (Festival diphone voice, CSTR/CMU)"
HTS = "BSD-style (CMU ARCTIC slt, HTS voice)"
MBROLA = "MBROLA voice licence: non-commercial, non-military use, only with the mbrola program"
PICO = "Apache-2.0 (SVOX Pico)"
ESPEAK = "GPL-3.0-or-later engine (espeak-ng formant synthesis)"
PIPER = "voice dataset CC0-1.0 (en_US-joe-medium model card); Piper engine GPL-3.0, run separately"
KOKORO = "Apache-2.0 (Kokoro-82M)"

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


def catalogue() -> tuple[Voice, ...]:
    """Every voice the builder knows, in a fixed order."""
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
                           "kokoro_gongitsune_tebukuro", "espeak_f2"})
VAL_SPEAKERS = frozenset({"ked", "kokoro_alpha_nezumi", "espeak_m8"})


def split_of(speaker: str) -> str:
    """The split a speaker belongs to: "test", "val" or "train" (the default for new speakers)."""
    if speaker in TEST_SPEAKERS:
        return "test"
    return "val" if speaker in VAL_SPEAKERS else "train"
