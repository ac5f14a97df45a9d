"""The natural-voice corpus: Kokoro's English voice packs, seeded blends, splits, shifts, sentences."""

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from metatts.corpus import kokoro_packs
from metatts.corpus.build import NATURAL_CLIPS, BuildConfig, build, natural_role, plan
from metatts.corpus.engines import Voice, parse_blend, unavailable
from metatts.corpus.manifest import read_manifest
from metatts.corpus.sentences import sentences
from metatts.corpus.shift import Shift, apply_shift, median_f0
from metatts.corpus.voices import (
    KOKORO_EN,
    MIN_WEIGHT,
    NATURAL_TEST,
    NATURAL_TRAIN,
    NATURAL_VAL,
    natural_catalogue,
    split_of,
    virtual_voices,
)

ROOT = Path(__file__).resolve().parents[1]


def _fake_tarball(path: Path, packs: dict[str, bytes]) -> str:
    """A tarball laid out like kokoro-js's; returns its sha256."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in packs.items():
            info = tarfile.TarInfo(f"package/voices/{name}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _packs(seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(510 * 256).astype("<f4").tobytes() for n in kokoro_packs.ENGLISH}


def test_pack_loader_checks_the_tarball_and_every_pack(tmp_path, monkeypatch):
    packs = _packs()
    tgz = tmp_path / "kokoro-js-1.2.1.tgz"
    digest = _fake_tarball(tgz, packs)
    with pytest.raises(kokoro_packs.PackError, match="sha256"):  # not the checked release
        kokoro_packs.load_pack("af_heart", tgz)

    monkeypatch.setattr(kokoro_packs, "TARBALL_SHA256", digest)
    with pytest.raises(kokoro_packs.PackError, match="voice pack af_heart has sha256"):
        kokoro_packs.load_pack("af_heart", tgz)  # the tarball passes, its pack does not

    hashes = {n: hashlib.sha256(b).hexdigest() for n, b in packs.items()}
    monkeypatch.setattr(kokoro_packs, "PACK_SHA256", hashes)
    pack = kokoro_packs.load_pack("af_heart", tgz)
    assert pack.shape == (510, 256) and pack.dtype == np.float32
    assert np.array_equal(pack, np.frombuffer(packs["af_heart"], "<f4").reshape(510, 256))
    mix = kokoro_packs.blend({"af_heart": 3, "am_adam": 1}, tgz)
    expected = 0.75 * pack + 0.25 * kokoro_packs.load_pack("am_adam", tgz)
    assert np.allclose(mix, expected, atol=1e-6)
    with pytest.raises(kokoro_packs.PackError, match="not one of Kokoro's 28 English voices"):
        kokoro_packs.load_pack("jf_alpha", tgz)
    with pytest.raises(ValueError, match="non-negative"):
        kokoro_packs.blend({"af_heart": -1.0}, tgz)


def test_real_packs_when_installed():
    if kokoro_packs.missing() is not None:
        pytest.skip(kokoro_packs.missing())
    packs = {n: kokoro_packs.load_pack(n) for n in ("af_heart", "bm_george")}
    assert all(p.shape == (510, 256) and np.isfinite(p).all() for p in packs.values())
    a, b = (p.ravel() / np.linalg.norm(p) for p in packs.values())
    assert float(a @ b) < 0.95  # distinct voices


def test_missing_packs_are_skipped_with_the_command_that_installs_them(tmp_path, monkeypatch):
    monkeypatch.setenv("METATTS_KOKORO_JS", str(tmp_path / "none"))
    why = unavailable(Voice("kokoro-en", "af_heart", "kokoro_en_af_heart", KOKORO_EN,
                            group="natural"))
    assert "install_corpus_engines.sh --packs-only" in why and "npm pack kokoro-js@1.2.1" in why
    result = build(tmp_path / "c", BuildConfig(natural_scale=0.1),
                   natural_catalogue(virtual=1)[:2])
    assert result.clips == [] and len(result.skipped) == 2


def test_install_script_without_npm_skips_the_packs_and_says_how(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "mkdir", "sha256sum", "cut", "rm", "dirname"):  # everything but npm
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True,
                               text=True).stdout.strip()
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "METATTS_KOKORO_JS": str(tmp_path / "packs"),
           "HOME": str(tmp_path)}
    done = subprocess.run([str(bin_dir / "bash"), str(ROOT / "scripts/install_corpus_engines.sh"),
                           "--packs-only"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "npm not found" in done.stderr and "--packs-only" in done.stderr
    assert not (tmp_path / "packs" / kokoro_packs.TARBALL).exists()


def test_blend_recipes_are_reproducible_from_the_seed():
    first = virtual_voices(300, seed=0)
    assert first == virtual_voices(300, seed=0)
    assert first != virtual_voices(300, seed=1)
    assert len({v.speaker for v in first}) == 300
    for voice in first:
        weights = parse_blend(voice.voice_id)
        assert 2 <= len(weights) <= 3 and len(voice.voice_id.split("+")) == len(weights)
        assert min(weights.values()) >= MIN_WEIGHT - 1e-3
        assert abs(sum(weights.values()) - 1) < 1e-6
        assert set(weights) <= set(NATURAL_TRAIN)
        assert 0.85 <= voice.speed <= 1.15 and voice.group == "natural"
    shifted = [v for v in first if (v.formant, v.pitch) != (1.0, 1.0)]
    assert 0.7 * len(first) < len(shifted) < len(first)  # most, not all, are shifted


def test_splits_are_fixed_and_disjoint():
    assert len(NATURAL_TEST) >= 6 and len(NATURAL_VAL) >= 3
    assert not set(NATURAL_TEST) & set(NATURAL_VAL)
    assert set(NATURAL_TEST) | set(NATURAL_VAL) | set(NATURAL_TRAIN) == set(kokoro_packs.ENGLISH)
    assert not (set(NATURAL_TEST) | set(NATURAL_VAL)) & set(NATURAL_TRAIN)
    for kind in ("af", "am", "bf", "bm"):  # US and UK, women and men, among the test voices
        assert any(v.startswith(kind) for v in NATURAL_TEST)
    voices = natural_catalogue()
    roles = {v.speaker: (natural_role(v), split_of(v.speaker)) for v in voices}
    assert sum(r == ("test", "test") for r in roles.values()) == len(NATURAL_TEST)
    assert sum(r == ("virtual", "train") for r in roles.values()) >= 300
    held_out = set(NATURAL_TEST) | set(NATURAL_VAL)
    for voice in voices:  # no test or validation voice is a parent of any blend
        if natural_role(voice) == "virtual":
            assert not set(parse_blend(voice.voice_id)) & held_out
    assert split_of("real_allison") == "test"


def test_plan_gives_natural_speakers_their_counts_and_recipe():
    voices = natural_catalogue(virtual=2)
    clips = [c for c, _ in plan(voices, 10, seed=0)]
    by_speaker = {}
    for clip in clips:
        by_speaker.setdefault(clip.speaker, []).append(clip)
    assert len(by_speaker[f"kokoro_en_{NATURAL_TEST[0]}"]) == NATURAL_CLIPS["test"]
    assert len(by_speaker[f"kokoro_en_{NATURAL_TRAIN[0]}"]) == NATURAL_CLIPS["train"]
    mix = by_speaker["kokoro_mix_0000"]
    assert len(mix) == NATURAL_CLIPS["virtual"]
    recipe = voices[-2]
    assert {(c.voice, c.speed, c.formant, c.pitch, c.group) for c in mix} == {
        (recipe.voice_id, recipe.speed, recipe.formant, recipe.pitch, "natural")}
    long = [c for c in clips if c.kind == "long"]
    assert 0.2 < len(long) / len(clips) < 0.5


def test_long_sentences_are_long_and_the_default_grammar_is_unchanged():
    plain = sentences(0, 200)
    assert plain == sentences(0, 200, long_share=0.0)
    assert "long" not in {s.kind for s in plain}
    mixed = sentences(0, 400, long_share=0.5)
    long = [s for s in mixed if s.kind == "long"]
    assert 0.4 < len(long) / len(mixed) < 0.6
    words = sorted(len(s.text.split()) for s in long)
    assert words[len(words) // 2] >= 18 and words[0] >= 10
    assert all(s.text[0].isupper() and s.text[-1] in ".?!" for s in long)


def _voiced(f0: float, seconds: float = 1.0, rate: int = 22050) -> np.ndarray:
    """A vowel-like tone: harmonics of ``f0`` under a fixed spectral envelope."""
    t = np.arange(int(seconds * rate)) / rate
    wav = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 30) if f0 * k < 5000)
    return (0.3 * wav / np.abs(wav).max()).astype(np.float32)


def test_pitch_shift_moves_the_median_f0_and_leaves_silence_alone():
    wav = _voiced(120.0)
    assert abs(median_f0(wav, 22050) - 120.0) < 3
    up = apply_shift(wav, 22050, Shift(formant=1.0, pitch=1.2))
    assert abs(median_f0(up, 22050) - 144.0) < 5
    assert np.array_equal(apply_shift(wav, 22050, Shift()), wav)  # identity: untouched
    silent = np.zeros(22050, np.float32)
    assert median_f0(silent, 22050) == 0.0
    assert np.abs(apply_shift(silent, 22050, Shift(1.1, 1.2))).max() <= 1.0  # no voiced frame
    with pytest.raises(ValueError, match="out of range"):
        apply_shift(wav, 22050, Shift(formant=3.0))


def render_one(tmp_path, voice):
    """Build a one-clip corpus of ``voice`` (skipped where its engine is missing); its clip."""
    why = unavailable(voice)
    if why is not None:
        pytest.skip(why)
    result = build(tmp_path, BuildConfig(natural_scale=1 / 16, jobs=1), [voice])
    assert not result.failures and len(result.clips) == 1
    (clip,) = read_manifest(tmp_path)
    return clip


def test_a_shifted_blend_renders_when_installed(tmp_path):
    voice = Voice("kokoro-en", "0.6*af_heart+0.4*am_liam", "kokoro_mix_t", KOKORO_EN, speed=1.05,
                  formant=1.05, pitch=1.1, group="natural")
    clip = render_one(tmp_path, voice)
    assert (clip.group, clip.speed, clip.formant, clip.pitch) == ("natural", 1.05, 1.05, 1.1)
    assert clip.engine == "kokoro-en" and clip.seconds > 1.0
    assert os.path.getsize(tmp_path / clip.audio) > 10_000


def test_a_changed_recipe_is_rendered_again(tmp_path):
    voice = Voice("flite", "kal", "kal", "test")
    if unavailable(voice) is not None:
        pytest.skip(unavailable(voice))
    config = BuildConfig(clips_per_speaker=2)
    assert build(tmp_path, config, [voice]).written == 2
    assert build(tmp_path, config, [voice]).written == 0
    shifted = Voice("flite", "kal", "kal", "test", formant=1.05, pitch=1.1)
    result = build(tmp_path, config, [shifted])
    assert result.written == 2 and {c.formant for c in read_manifest(tmp_path)} == {1.05}


def test_span_voices_are_seeded_training_speakers_with_blend_sized_clip_counts():
    from metatts.corpus.quality import role
    from metatts.corpus.voices import parse_span, span_voices

    voices = span_voices(40, seed=0)
    assert voices == span_voices(40, seed=0) and voices != span_voices(40, seed=1)
    assert span_voices(3, seed=0) == voices[:3]  # adding voices never changes the earlier ones
    assert len({v.speaker for v in voices}) == 40 and all(v.group == "natural" for v in voices)
    assert all(split_of(v.speaker) == "train" and natural_role(v) == "virtual" for v in voices)
    assert [parse_span(v.voice_id) for v in voices[:2]] == [(0, 0), (0, 1)]
    assert all(0.85 <= v.speed <= 1.15 and (v.formant, v.pitch) == (1.0, 1.0) for v in voices)
    assert natural_catalogue(virtual=2, seed=0)[-1].engine == "kokoro-en"  # none by default
    assert natural_catalogue(virtual=2, seed=0, span=3)[-3:] == voices[:3]
    clips = plan(voices[:2], 10, seed=0)
    assert len(clips) == 2 * NATURAL_CLIPS["virtual"]
    assert {role(c) for c, _ in clips} == {"natural/span"}


def test_span_styles_are_a_pure_function_of_seed_and_index():
    if kokoro_packs.missing():
        pytest.skip(kokoro_packs.missing())
    basis = kokoro_packs.span_basis()
    assert len(basis) == 43 and not set(basis) & set(NATURAL_TEST + NATURAL_VAL)
    a = kokoro_packs.span_style(0, 5)
    assert a.shape == (510, 256) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, kokoro_packs.span_style(0, 5))
    assert not np.array_equal(a, kokoro_packs.span_style(0, 6))
    assert not np.array_equal(a, kokoro_packs.span_style(1, 5))


def test_a_span_voice_renders_when_installed(tmp_path):
    from metatts.corpus.voices import span_voices

    (voice,) = span_voices(1, seed=0)
    clip = render_one(tmp_path, voice)
    assert clip.engine == "kokoro-span" and clip.voice == "span0:0" and clip.seconds > 1.0
