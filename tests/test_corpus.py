"""The offline corpus builder: sentences, plan and split, a tiny build, resuming, missing engines."""

import json
import re

import pytest
import soundfile as sf

from metatts.cli.corpus import main as corpus_main
from metatts.corpus.build import BuildConfig, build, clips_per_speaker, plan
from metatts.corpus.engines import Voice, parse_blend, unavailable
from metatts.corpus.eval_set import SHIPPED, export_eval_set
from metatts.corpus.manifest import Clip, read_manifest, write_manifest
from metatts.corpus.quality import sample, transcripts
from metatts.corpus.sentences import sentences
from metatts.corpus.voices import catalogue, split_of

# The two cheapest engines; both give the same audio on every run.
TINY = (Voice("flite", "kal", "kal", "test"), Voice("espeak-ng", "en-us+m3", "espeak_m3", "test"))


def _tiny_voices():
    missing = [why for why in map(unavailable, TINY) if why is not None]
    if missing:
        pytest.skip("corpus engines not installed (scripts/install_corpus_engines.sh): "
                    + "; ".join(missing))
    return TINY


def test_sentences_are_seeded_and_varied():
    first = sentences(0, 300)
    assert first == sentences(0, 300)
    assert first != sentences(1, 300)
    assert len({s.text for s in first}) == 300
    assert {s.kind for s in first} == {"statement", "question", "command", "number", "name"}
    assert sum(s.text.endswith("?") for s in first) > 30
    assert any(re.search(r"\b(twenty|thirty|hundred|nineteen)\b", s.text) for s in first)
    assert not any(re.search(r"\d", s.text) for s in first)  # numbers are spelled out
    lengths = [len(s.text.split()) for s in first]
    assert max(lengths) - min(lengths) >= 6


def test_catalogue_counts_people_once_and_splits_by_speaker():
    voices = catalogue()
    speakers = {v.speaker for v in voices}
    assert len(speakers) >= 30
    assert {v.speaker for v in voices if v.voice_id in ("slt", "voice_cmu_us_slt_arctic_hts")} == {"slt"}
    splits = {s: split_of(s) for s in speakers}
    assert set(splits.values()) == {"train", "val", "test"}
    for engine in ("piper", "pico"):  # whole engines held out
        assert {splits[v.speaker] for v in voices if v.engine == engine} == {"test"}
    clips = [clip for clip, _ in plan(voices, 2, seed=0)]
    per_speaker_split = {(c.speaker, c.split) for c in clips}
    assert len(per_speaker_split) == len(speakers)  # one split per speaker: disjoint


def test_plan_is_deterministic_and_alternates_engines():
    voices = [Voice("flite", "kal", "kal", "x"), Voice("festival", "voice_kal_diphone", "kal", "x")]
    clips = [clip for clip, _ in plan(voices, 4, seed=3)]
    assert clips == [clip for clip, _ in plan(voices, 4, seed=3)]
    assert [c.engine for c in clips] == ["flite", "festival", "flite", "festival"]
    assert [c.id for c in clips] == ["kal_0000", "kal_0001", "kal_0002", "kal_0003"]
    assert clips_per_speaker(1.0, voices) * 2.6 >= 3600  # one speaker: all the hour
    kokoro = [Voice("kokoro", "jf_alpha", "k", "x")]
    assert len(plan(voices + kokoro, 8, seed=3)) == 8 + 2  # Kokoro is slow: a quarter as many


def test_parse_blend_normalizes_weights():
    assert parse_blend("jf_alpha") == {"jf_alpha": 1.0}
    assert parse_blend("3*jf_alpha+1*jm_kumo") == {"jf_alpha": 0.75, "jm_kumo": 0.25}


def test_manifest_round_trip_and_rejects_unknown_fields(tmp_path):
    clip = Clip("a_0000", "a", "flite", "kal", "x", "train", "question", "Why?", "a/a_0000.wav", 1.5)
    write_manifest(tmp_path, [clip])
    assert read_manifest(tmp_path) == [clip]
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"utt": "a", "colour": 1}) + "\n")
    with pytest.raises(ValueError, match="colour"):
        read_manifest(tmp_path)


def test_tiny_build_layout_determinism_and_resume(tmp_path):
    voices = _tiny_voices()
    config = BuildConfig(seed=7, jobs=2, clips_per_speaker=3)
    result = build(tmp_path / "a", config, voices)
    assert result.written == 6 and not result.failures and not result.skipped
    clips = read_manifest(tmp_path / "a")
    assert [c.id for c in clips] == [c.id for c in result.clips]
    for clip in clips:
        wav = tmp_path / "a" / clip.audio
        info = sf.info(str(wav))
        assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
        assert wav.with_suffix(".txt").read_text().strip() == clip.text
        assert clip.seconds > 0.5 and clip.split == split_of(clip.speaker)

    again = build(tmp_path / "a", config, voices)
    assert again.written == 0 and again.clips == result.clips

    (tmp_path / "a" / clips[1].audio).unlink()  # an interrupted build lacks some clips
    assert build(tmp_path / "a", config, voices).written == 1

    from metatts.data.detect import read_dataset  # the project's reader takes the manifest

    readout = read_dataset(tmp_path / "a")
    assert readout.layout == "manifest" and len(readout.utterances) == 6
    assert {(u.speaker, u.split) for u in readout.utterances} == {
        (c.speaker, c.split) for c in clips}

    build(tmp_path / "b", config, voices)
    for clip in clips:
        assert (tmp_path / "a" / clip.audio).read_bytes() == (tmp_path / "b" / clip.audio).read_bytes()


def test_missing_engine_is_skipped_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no engine binaries
    monkeypatch.setenv("METATTS_GEN_VENV", str(tmp_path / "none"))
    flite = Voice("flite", "kal", "kal", "x")
    assert "apt-get install -y flite" in unavailable(flite)
    assert "install_corpus_engines.sh" in unavailable(Voice("piper", "joe", "piper_joe", "x"))
    result = build(tmp_path / "c", BuildConfig(clips_per_speaker=2), [flite])
    assert result.clips == [] and "flite" in result.skipped[0]


def test_cli_builds_a_small_corpus_and_rejects_bad_input(tmp_path, capsys):
    _tiny_voices()
    assert corpus_main(["--out", str(tmp_path), "--engines", "warp-drive"]) == 2
    assert "unknown engine" in capsys.readouterr().err
    for hours in ("nan", "inf", "0"):
        assert corpus_main(["--out", str(tmp_path), "--hours", hours]) == 2
        assert "finite number of hours" in capsys.readouterr().err
    assert corpus_main(["--out", str(tmp_path), "--engines", "flite", "--clips-per-speaker", "1",
                        "--report-clips", "0"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["speakers"] == 4 and report["clips"] == 4  # kal, awb, rms, slt


def test_eval_set_export_keeps_only_test_speakers(tmp_path):
    voices = (*_tiny_voices(), Voice("espeak-ng", "en-us+f2", "espeak_f2", "test"))
    build(tmp_path / "corpus", BuildConfig(clips_per_speaker=3), voices)
    clips = export_eval_set(tmp_path / "corpus", tmp_path / "eval", per_speaker=2)
    assert {c.speaker for c in clips} == {"espeak_f2"} and len(clips) == 2
    assert read_manifest(tmp_path / "eval") == clips
    info = sf.info(str(tmp_path / "eval" / clips[0].audio))
    assert (info.format, info.samplerate, info.subtype) == ("FLAC", 22050, "PCM_16")


def test_shipped_eval_set_is_held_out_and_complete():
    clips = read_manifest(SHIPPED)
    assert len({c.speaker for c in clips}) >= 6 and {c.split for c in clips} == {"test"}
    assert all(split_of(c.speaker) == "test" for c in clips)
    for clip in clips:
        assert (SHIPPED / clip.audio).is_file()
        assert (SHIPPED / clip.audio).with_suffix(".txt").read_text().strip() == clip.text


def test_quality_sample_takes_the_first_clips_of_every_voice():
    clips = [Clip(f"s_{i}", "s", "flite", "kal" if i % 2 else "kal16", "x", "train", "statement",
                  "Hi there.", f"s/s_{i}.wav") for i in range(6)]
    assert [c.id for c in sample(clips, 2)] == ["s_0", "s_1", "s_2", "s_3"]


def test_quality_sample_takes_fewer_clips_of_blended_voices():
    clips = [Clip(f"{v}_{i}", v, "kokoro-en", v, "x", "train", "statement", "Hi there.",
                  f"{v}/{v}_{i}.wav") for v in ("af_bella", "0.5*af_bella+0.5*am_adam")
             for i in range(4)]
    chosen = [c.id for c in sample(clips, 3, per_blend=1)]
    assert chosen == ["af_bella_0", "af_bella_1", "af_bella_2", "0.5*af_bella+0.5*am_adam_0"]
    assert len(sample(clips, 3)) == 6


def test_quality_transcripts_resume_from_the_cache_after_a_kill(tmp_path):
    import numpy as np

    heard, kill_at = [], [3]

    def whisper(wav, sample_rate, model):
        heard.append(len(wav))
        if len(heard) == kill_at[0]:
            raise KeyboardInterrupt  # killed while transcribing the third clip
        return [f"clip of {len(wav)} by {model}"]

    wavs = [np.zeros(n, dtype=np.float32) for n in (100, 200, 300, 400)]
    keys = ["a.wav", "b.wav", "c.wav", "d.wav"]
    cache = tmp_path / "transcripts.jsonl"
    with pytest.raises(KeyboardInterrupt):
        transcripts(wavs, keys, "base", cache, None, whisper)
    assert len(cache.read_text().splitlines()) == 2  # the two finished clips were kept
    with open(cache, "a") as f:
        f.write('{"audio": "c.wav", "mod')  # a line cut short by the kill
    heard.clear()
    kill_at[0] = 0
    out = transcripts(wavs, keys, "base", cache, None, whisper)
    assert out == [f"clip of {n} by base" for n in (100, 200, 300, 400)]
    assert heard == [300, 400]  # only the clips not in the cache
    heard.clear()
    wavs[1] = np.zeros(250, dtype=np.float32)  # b.wav re-rendered: not the cached clip
    assert transcripts(wavs, keys, "tiny.en", cache, None, whisper)[1] == "clip of 250 by tiny.en"
    assert transcripts(wavs, keys, "base", cache, None, whisper)[0] == "clip of 100 by base"
    assert heard == [100, 250, 300, 400, 250]


def test_eval_set_export_keeps_the_other_speakers_already_there(tmp_path):
    voices = (*_tiny_voices(), Voice("espeak-ng", "en-us+f2", "espeak_f2", "test"))
    build(tmp_path / "corpus", BuildConfig(clips_per_speaker=2), voices)
    other = Clip("real_x_0", "real_x", "human", "x", "CC", "test", "prompt", "Hello there.",
                 "real_x/real_x_0.flac", 1.0, group="real")
    (tmp_path / "eval" / "real_x").mkdir(parents=True)
    (tmp_path / "eval" / "real_x" / "real_x_0.flac").write_bytes(b"kept")
    write_manifest(tmp_path / "eval", [other])
    clips = export_eval_set(tmp_path / "corpus", tmp_path / "eval", per_speaker=1)
    assert read_manifest(tmp_path / "eval") == [other, *clips]
    assert (tmp_path / "eval" / "real_x" / "real_x_0.flac").read_bytes() == b"kept"
    assert "| real_x | real |" in (tmp_path / "eval" / "README.md").read_text()
    again = export_eval_set(tmp_path / "corpus", tmp_path / "eval", per_speaker=1)
    assert read_manifest(tmp_path / "eval") == [other, *again]


def test_eval_set_exports_validation_speakers_to_a_folder_of_their_own(tmp_path):
    voices = (*_tiny_voices(), Voice("espeak-ng", "en-us+f2", "espeak_f2", "test"),
              Voice("espeak-ng", "en-us+m8", "espeak_m8", "val"))
    build(tmp_path / "corpus", BuildConfig(clips_per_speaker=2), voices)
    clips = export_eval_set(tmp_path / "corpus", tmp_path / "val", per_speaker=2, split="val")
    assert {(c.speaker, c.split) for c in clips} == {("espeak_m8", "val")} and len(clips) == 2
    assert (tmp_path / "val" / "README.md").read_text().startswith("# Validation speakers")
    export_eval_set(tmp_path / "corpus", tmp_path / "test", per_speaker=1)
    with pytest.raises(ValueError, match="holds speakers of split test; export the val"):
        export_eval_set(tmp_path / "corpus", tmp_path / "test", per_speaker=1, split="val")
    assert {c.split for c in read_manifest(tmp_path / "test")} == {"test"}
    assert not (tmp_path / "test" / "espeak_m8").exists()
