"""The app's handlers on a tiny model: clip reports flag bad clips, adaptation yields every step and
a voice file, sessions stay apart, bad input becomes a sentence, a missing model a clear note."""

import contextlib
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import SPEECH

import app  # builds the page: must load no model
from metatts import app_logic as logic
from metatts.model.checkpoint import save_checkpoint
from metatts.model.config import load_config
from metatts.model.fastspeech2 import FastSpeech2
from metatts.text import SYMBOLS

MODELS_LOADED_BY_IMPORT = logic._load.cache_info().currsize

TINY = Path(__file__).parent.parent / "configs" / "tiny.json"
SR = 22050


def quiet(*args, **kwargs):  # a stand-in for gr.Progress
    pass


@contextlib.contextmanager
def serve_app(root: Path):
    """The app served on loopback over a random tiny checkpoint and no meta-learned one; yields
    its URL."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("METATTS_CHECKPOINT", str(tiny_checkpoint(root / "ckpt")))
        mp.setenv("METATTS_META_CHECKPOINT", str(root / "no-meta"))
        demo = app.build_demo()
        demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True,
                    **app.launch_options())
        try:
            yield demo.local_url
        finally:
            demo.close()


def tiny_checkpoint(directory, seed=0):
    torch.manual_seed(seed)
    config = load_config(TINY, {"model": {"n_symbols": len(SYMBOLS), "n_speakers": 3},
                                "data": {"tokens": "phonemes"}})
    return save_checkpoint(directory, FastSpeech2(config.model, config.loss), config, SYMBOLS,
                           ("a", "b", "c"))


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("base") / "ckpt")


@pytest.fixture
def tiny(base_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("METATTS_CHECKPOINT", str(base_dir))
    monkeypatch.setenv("METATTS_META_CHECKPOINT", str(tmp_path / "no-meta"))
    return base_dir


@pytest.fixture
def no_models(monkeypatch, tmp_path):
    monkeypatch.setenv("METATTS_CHECKPOINT", str(tmp_path / "none"))
    monkeypatch.setenv("METATTS_META_CHECKPOINT", str(tmp_path / "none"))


def slt():
    return sorted((SPEECH / "slt").glob("*.wav"))


def write(path, wav, text="hello there"):
    sf.write(str(path), wav, SR)
    path.with_suffix(".txt").write_text(text)
    return path


def speak(text, session):
    """app.synthesize run to its end: (streamed chunks per init, the final update)."""
    *chunks, final = app.synthesize(text, session, progress=quiet)
    streamed = {init: [c[k] for c in chunks if c[k] != gr.skip()]
                for k, init in ((1, "meta"), (2, "pretrained"))}
    return streamed, final


def adapt_all(table, session, choice="fine-tuning", steps=6, lr=0):
    *_, last = app.adapt(table, choice, steps, lr, session, progress=quiet)
    return last


def test_importing_the_app_loads_no_model():
    assert MODELS_LOADED_BY_IMPORT == 0 and isinstance(app.demo, gr.Blocks)


def test_malloc_arenas_are_limited_unless_the_environment_says(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not logic.limit_malloc_arenas()  # the person's own setting stands
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    import platform

    if platform.libc_ver()[0] == "glibc":
        assert logic.limit_malloc_arenas()


def test_every_call_that_writes_the_session_waits_in_the_heavy_queue():
    """A heavy call returns the session it read when it began: a call writing the session beside
    it (a voice loaded during an adaptation) would be overwritten when it ends."""
    fns = app.demo.fns.values() if isinstance(app.demo.fns, dict) else app.demo.fns
    writers = {f.name: f.concurrency_id for f in fns
               if any(isinstance(o, gr.State) for o in f.outputs)}
    assert {"adapt", "load_voice", "check_clips", "synthesize"} <= set(writers)
    assert set(writers.values()) == {app.HEAVY}, writers


def test_an_adaptation_nobody_waits_for_stops_at_its_next_step():
    """Closing the steps' generator (a cancelled or abandoned adapt) stops the thread."""
    import threading
    import time
    from types import SimpleNamespace

    steps, ended = [], threading.Event()

    def work(on_step):
        try:
            for i in range(1, 1000):
                time.sleep(0.01)
                on_step(SimpleNamespace(step=i, steps=999, loss=1.0))
                steps.append(i)
        finally:
            ended.set()

    events = logic._run("meta", work)
    assert [next(events).step for _ in range(3)] == [1, 2, 3]
    events.close()
    assert ended.wait(5) and len(steps) < 10  # not the 999 steps


def test_download_folders_older_than_a_day_are_removed(tmp_path, monkeypatch):
    import os
    import time

    monkeypatch.setattr(app, "OUTPUT_ROOT", tmp_path / "outputs")
    old, recent = app.output_folder("voice"), app.output_folder("speech")
    (old / "voice-meta.safetensors").write_bytes(b"x")
    gone = time.time() - app.DOWNLOAD_SECONDS - 60
    os.utime(old, (gone, gone))
    new = app.output_folder("voice")
    assert not old.exists() and recent.is_dir() and new.is_dir() and new.name.startswith("voice-")


def test_without_a_model_the_page_builds_and_says_how_to_get_one(no_models):
    assert app.status_markdown().endswith(logic.NO_MODEL) and "python -m metatts train" in \
        logic.NO_MODEL
    assert app.init_choices() == []
    assert isinstance(app.build_demo(), gr.Blocks)
    with pytest.raises(gr.Error, match="No trained model is installed"):
        next(app.adapt(None, None, 10, 0, logic.Session(), progress=quiet))


def test_a_missing_or_plain_meta_checkpoint_turns_the_meta_option_off(tiny, monkeypatch):
    assert app.init_choices() == ["fine-tuning"]
    assert "meta-learned option is off" in app.status_markdown()
    monkeypatch.setenv("METATTS_META_CHECKPOINT", str(tiny))  # a checkpoint, not meta-learned
    assert "not a meta-learned checkpoint" in logic.available_inits()["meta"]
    with pytest.raises(logic.AppError, match="not available"):
        logic.load_model("meta")


def test_clip_report_measures_and_flags(tmp_path):
    speech, rate = sf.read(slt()[0], dtype="float32")
    assert rate == SR
    words = slt()[0].with_suffix(".txt").read_text()
    noise = np.random.default_rng(0).normal(0, 0.1, len(speech)).astype("f4")
    # speech in noise as loud as itself: noisy, not "no speech"
    in_noise = speech + noise * np.sqrt(np.mean(speech**2) / np.mean(noise**2))
    files = [write(tmp_path / "ok.wav", speech, words),
             write(tmp_path / "loud.wav", np.clip(8 * speech, -1, 1), words),
             write(tmp_path / "noisy.wav", in_noise / np.abs(in_noise).max() * 0.5, words),
             write(tmp_path / "quiet.wav", 0 * noise), tmp_path / "broken.wav"]
    files[-1].write_bytes(b"not audio at all")  # long clips, tones and noise: test_app_uploads
    reports, wavs = logic.check_clips(files)
    by = {r.name: r for r in reports}
    assert [r.name for r in reports] == [f.name for f in files]
    assert by["ok.wav"].use and by["ok.wav"].seconds == pytest.approx(
        len(logic.audio.trim_silence(speech, SR)) / SR, abs=0.01)
    assert "clipped" in by["loud.wav"].problem
    assert by["noisy.wav"].problem.startswith("noisy: about ")
    assert "silent" in by["quiet.wav"].problem and "quiet.wav" not in wavs
    assert "cannot read it as audio" in by["broken.wav"].problem
    assert str(tmp_path) not in by["broken.wav"].problem  # no server paths shown to users
    table = app.report_table(reports)
    assert list(table["use"]) == [True] + [False] * 4
    assert list(table["notes"]) == [""] * 5


def test_no_clips_or_too_many_is_a_sentence():
    with pytest.raises(logic.AppError, match="at least one clip"):
        logic.check_clips([])
    with pytest.raises(gr.Error, match="at most 10"):
        app.check_clips(slt() * 4, None, logic.Session(), progress=quiet)


def test_adapt_yields_every_step_then_a_voice_file(tiny, monkeypatch):
    monkeypatch.setattr(app, "CURVE_SECONDS", 0.0)  # redraw the curve at every step
    table, session = app.check_clips(slt(), None, logic.Session(), progress=quiet)
    events = list(app.adapt(table, "fine-tuning", 5, 0, session, progress=quiet))
    assert [len(e[1]) for e in events[:-1]] == [1, 2, 3, 4, 5]  # the loss curve grows live
    # while it adapts, the page gets the curve only: the session (clips, voices) comes at the end
    assert all(isinstance(e[0], type(gr.skip())) for e in events[:-1])
    session, curve, note, files = events[-1]
    assert "Adapted 3 clips" in note and list(session.voices) == ["pretrained"]
    assert Path(files[0]).name == "voice-pretrained.safetensors"
    assert set(curve["method"]) == {"fine-tuning"}


def test_the_curve_is_redrawn_at_most_every_curve_seconds(tiny, monkeypatch):
    monkeypatch.setattr(app, "CURVE_SECONDS", 3600.0)
    table, session = app.check_clips(slt(), None, logic.Session(), progress=quiet)
    events = list(app.adapt(table, "fine-tuning", 6, 0, session, progress=quiet))
    # the first step and the last one are drawn; the final update has the whole curve
    assert [len(e[1]) for e in events] == [1, 6, 6]
    assert "Adapted 3 clips" in events[-1][2]


def test_unticked_clips_and_empty_transcripts(tiny):
    table, session = app.check_clips(slt(), None, logic.Session(), progress=quiet)
    table["use"] = False
    with pytest.raises(gr.Error, match="No clip is selected"):
        adapt_all(table, session)
    table["use"], table.loc[0, "transcript"] = True, " "
    with pytest.raises(gr.Error, match="transcript is empty"):
        adapt_all(table, session)


def test_sessions_do_not_share_voices_and_synthesis_speaks(tiny):
    table, mine = app.check_clips(slt(), None, logic.Session(), progress=quiet)
    theirs = logic.Session()
    mine = adapt_all(table, mine)[0]
    assert theirs.voices == {} and "pretrained" in mine.voices
    with pytest.raises(gr.Error, match="no voice yet"):
        next(app.synthesize("Hello.", theirs, progress=quiet))
    streamed, final = speak("Hello there. How are you?", mine)
    session, _, _, mel_meta, mel_ft, note, files = final
    assert streamed["meta"] == [] and len(streamed["pretrained"]) == 2  # a chunk a sentence
    rate, wav = streamed["pretrained"][0]
    assert rate == SR and wav.ndim == 1 and wav.dtype == np.int16 and len(wav) > 0
    whole = np.concatenate([w for _, w in streamed["pretrained"]])
    assert np.abs(whole / 32767 - session.outputs["pretrained"]).max() < 1e-4
    assert mel_meta is None and mel_ft.ndim == 3 and mel_ft.shape[2] == 3 and "adapted in" in note
    assert session.text == "Hello there. How are you?" and set(session.outputs) == {"pretrained"}
    saved, rate = sf.read(files[0])
    assert rate == SR and len(saved) == len(whole)


@pytest.mark.parametrize("text, match", [("  ", "Type some text"),
                                         ("word " * 100, "the limit here is"),
                                         ("1" * 399, "Spelled out, the text is 399 words")])
def test_bad_text_is_refused(tiny, text, match):
    table, session = app.check_clips(slt()[:1], None, logic.Session(), progress=quiet)
    session = adapt_all(table, session, steps=1)[0]
    with pytest.raises(gr.Error, match=match):
        next(app.synthesize(text, session, progress=quiet))


def test_emoji_and_symbols_that_are_not_spoken_are_named(tiny):
    """A sentence of emoji (or a symbol inside one) is left out with a note that names it; text
    of nothing but emoji is refused with what to do."""
    table, session = app.check_clips(slt()[:1], None, logic.Session(), progress=quiet)
    session = adapt_all(table, session, steps=1)[0]
    streamed, final = speak("Hello there. 🎉🎉🎉! I ♥ you.", session)
    note = final[5]
    assert "Not spoken: 🎉🎉🎉 ♥ (emoji and symbols are not read aloud; write what they say in "\
           "words)" in note
    assert len(streamed["pretrained"]) == 2  # "Hello there. 🎉🎉🎉!" and "I ♥ you."
    _, plain = speak("Hello there. I love you.", session)
    assert "Not spoken" not in plain[5]
    with pytest.raises(gr.Error, match="it has no words \\(emoji and symbols are not read "
                                       "aloud; write what they say in words\\)"):
        app.ready_to_speak("🎉🎉 ♥", session)


def test_the_speaking_rate_changes_how_long_the_speech_is_and_is_checked(tiny):
    """Speak at half the pace gives longer audio and says so (a tiny model's tokens take a
    frame or two each, so the ratio is not 2, and it cannot go faster: every token keeps a
    frame); a rate the page does not offer (or text from an API client) is refused with the
    range, before any audio is made."""
    table, session = app.check_clips(slt()[:1], None, logic.Session(), progress=quiet)
    session = adapt_all(table, session, steps=1)[0]
    text = "Hello there, how are you today?"
    *_, own = app.synthesize(text, session, progress=quiet)
    *_, slow = app.synthesize(text, session, 0.5, progress=quiet)
    *_, typed = app.synthesize(text, session, "0.5", progress=quiet)
    samples = {name: len(sf.read(final[6][0])[0]) for name, final in (("own", own),
                                                                       ("slow", slow),
                                                                       ("typed", typed))}
    assert samples["slow"] > 1.25 * samples["own"] and samples["typed"] == samples["slow"]
    assert "spoken at 0.5 times the voice's own pace" in slow[5] and "pace" not in own[5]
    for pace in (0.25, 3, "fast", float("nan")):
        with pytest.raises(gr.Error, match="speaking rate must be between 0.5 and 2"):
            app.ready_to_speak(text, session, None, pace)
        with pytest.raises(gr.Error, match="speaking rate must be between 0.5 and 2"):
            next(app.synthesize(text, session, pace, progress=quiet))


def test_voice_files_load_and_refuse_another_model(tiny, tmp_path, monkeypatch):
    table, session = app.check_clips(slt()[:2], None, logic.Session(), progress=quiet)
    voice_file = adapt_all(table, session, steps=2)[3][0]
    fresh, note = app.load_voice(voice_file, logic.Session())
    assert "pretrained" in fresh.voices and "adapted on 2 clips" in note
    with pytest.raises(gr.Error, match="not a metatts voice"):
        app.load_voice(str(tiny / "model.safetensors"), logic.Session())
    other = tiny_checkpoint(tmp_path / "other", seed=1)
    monkeypatch.setenv("METATTS_CHECKPOINT", str(other))
    with pytest.raises(gr.Error, match="made for another model"):
        app.load_voice(voice_file, logic.Session())


def test_score_needs_outputs_and_without_clips_gives_wer_only():
    with pytest.raises(gr.Error, match="Synthesize something first"):
        app.score(logic.Session(), progress=quiet)
    # a voice loaded from a file, no clips: nothing to compare with, but WER is still read
    wav, rate = sf.read(str(slt()[0]), dtype="float32")
    said = (slt()[0].with_suffix(".txt")).read_text().strip()
    [only] = logic.score_outputs(logic.Session(outputs={"pretrained": wav}, text=said))
    assert only.similarity is None and only.wer < 0.5 and only.transcript


def test_a_clip_of_another_person_is_unticked_with_the_reason():
    """One person's clips are 0.66-0.95 alike by ECAPA (OTHER_VOICE_COSINE); another's stand
    apart: a recording added to an example voice's clips, say."""
    reports, _ = logic.check_clips([*slt()[:2], SPEECH / "awb" / "awb_01.wav"])
    assert [r.use for r in reports] == [True, True, False]
    assert reports[2].problem.startswith("another voice: unlike your other clips")
    reports, _ = logic.check_clips([slt()[0], SPEECH / "awb" / "awb_01.wav"])
    assert [r.use for r in reports] == [True, False]  # of two, the second is named
    assert all(r.use for r in logic.check_clips(slt())[0])


def test_the_clips_are_embedded_once_for_the_check_and_the_preview(monkeypatch):
    from metatts import speaker

    wavs = [logic.audio.prepare_clip(p) for p in slt()[:3]]
    expected = speaker.embed(wavs, logic.audio.SAMPLE_RATE)
    calls = []
    real = speaker.embed
    monkeypatch.setattr(speaker, "embed", lambda w, *a, **k: calls.append(len(w)) or real(w, *a, **k))
    monkeypatch.setattr(logic, "_EMBEDDINGS", {})
    assert torch.equal(logic.clip_embeddings(wavs), expected)
    assert torch.equal(logic.clip_embeddings(wavs[1:]), expected[1:]) and calls == [3]
    monkeypatch.setattr(logic, "_EMBEDDINGS_KEPT", 2)
    logic.clip_embeddings(wavs)  # none missing: nothing embedded, the oldest let go
    assert calls == [3] and len(logic._EMBEDDINGS) == 2


def test_checking_again_keeps_what_a_person_corrected(tiny):
    """One more clip checked: the clips checked before keep their edited transcript and tick;
    the new one gets its own."""
    table, session = app.check_clips(slt()[:2], None, logic.Session(), progress=quiet)
    first, second = table["clip"][0], table["clip"][1]
    table.loc[0, "transcript"] = "My own words."
    table.loc[1, "use"] = False
    again, _ = app.check_clips(slt()[:3], None, session, table, progress=quiet)
    rows = {name: (use, text) for use, name, text in app.table_rows(again)}
    assert rows[first] == (True, "My own words.") and rows[second][0] is False
    assert len(rows) == 3 and list(again["notes"]).count(
        "Your transcript and tick from before are kept.") == 2
    # the same name with other audio is another clip
    assert logic.kept_edits([(False, "a.wav", "x")], {"a.wav": (True, "x")},
                            {"a.wav": np.zeros(3)}, {"a.wav": np.ones(3)}) == {}
    # what the app itself proposed is not pinned: among more of awb's clips, slt's is the odd
    # one now, and the fresh check's ticks stand
    awb = sorted((SPEECH / "awb").glob("*.wav"))
    table, session = app.check_clips([slt()[0], awb[0]], None, logic.Session(), progress=quiet)
    assert list(table["use"]) == [True, False]
    again, _ = app.check_clips([slt()[0], *awb[:3]], None, session, table, progress=quiet)
    assert list(again["use"]) == [False, True, True, True]
    assert not any("from before" in n for n in again["notes"])


def test_new_clips_set_aside_voices_adapted_from_other_clips(tiny, tmp_path):
    """A voice belongs to the clips it was adapted from: checking other clips sets it aside (it
    would be spoken and scored as the new voice); the same clips again, or a voice loaded from
    a file, stay."""
    table, session = app.check_clips(slt()[:2], None, logic.Session(), progress=quiet)
    session, _, _, files = adapt_all(table, session)
    _, again = app.check_clips(slt()[:2], None, session, progress=quiet)
    assert list(again.voices) == ["pretrained"] and again.seconds
    _, other = app.check_clips(slt()[2:], None, session, progress=quiet)
    assert other.voices == {} and other.seconds == {} and other.wavs
    loaded, note = app.load_voice(files[0], other)
    assert note.endswith("adapted on 2 clips.")
    _, kept = app.check_clips(slt()[:1], None, loaded, progress=quiet)
    assert list(kept.voices) == ["pretrained"]


def test_speak_is_checked_before_it_runs(tiny):
    """The page's Speak first runs ready_to_speak, so that a refusal leaves the last speech in
    place; adapting before checking clips says to check them."""
    with pytest.raises(gr.Error, match="no voice yet"):
        app.ready_to_speak("Hello.", logic.Session())
    table, session = app.check_clips(slt()[:1], None, logic.Session(), progress=quiet)
    # the page still shows a report and a voice to download, but its session was dropped
    with pytest.raises(gr.Error, match="no longer held"):
        app.ready_to_speak("Hello.", logic.Session(), ["/tmp/voice-meta.safetensors"])
    with pytest.raises(logic.AppError, match="no longer held"):
        logic.chosen_clips(logic.Session(), app.table_rows(table))
    # new clips set the voice aside, its file stays in the box: not a dropped session
    with pytest.raises(gr.Error, match="no voice yet"):
        app.ready_to_speak("Hello.", session, ["/tmp/voice-meta.safetensors"])
    session = adapt_all(table, session, steps=1)[0]
    for text in ("  ", "?!...", "x" * (logic.MAX_TEXT_CHARS + 1)):
        with pytest.raises(gr.Error):
            app.ready_to_speak(text, session)
    assert app.ready_to_speak("Hello.", session) is None
    with pytest.raises(gr.Error, match="Check clips"):
        adapt_all(None, logic.Session())


def test_example_voices_and_options(monkeypatch, tmp_path):
    examples = logic.example_voices()
    assert "slt" in examples and all(p.suffix == ".wav" for p in examples["slt"])
    files, table, session = app.use_example("slt", logic.Session())
    assert files == [str(p) for p in examples["slt"]] and list(table["use"]) == [True] * 3
    assert list(session.wavs) == [p.name for p in examples["slt"]]
    with pytest.raises(gr.Error, match="no example voice"):
        app.use_example(None, logic.Session())
    seen = {}
    monkeypatch.setattr(app.demo, "launch", lambda **kw: seen.update(kw))
    assert app.main(["--host", "0.0.0.0", "--port", "7999"]) == 0
    assert seen["server_name"] == "0.0.0.0" and seen["server_port"] == 7999
    assert seen["share"] is None  # Gradio's own default and environment variables apply


def test_settings_are_checked(tiny):
    base = logic.load_model("pretrained")
    assert logic.settings_for("pretrained", base, 7, 0.1).steps == 7
    with pytest.raises(logic.AppError, match="between 1 and"):
        logic.settings_for("pretrained", base, 5000, None)
    assert logic.settings_for("pretrained", base, 7.0, None).steps == 7  # a slider's float
    with pytest.raises(logic.AppError, match="whole number"):
        logic.settings_for("pretrained", base, 2.7, None)
    with pytest.raises(logic.AppError, match="learning rate"):
        logic.settings_for("pretrained", base, None, 5.0)
    # what an API call may send: text, which is read where it is a number
    assert logic.settings_for("pretrained", base, "20", "0.05").steps == 20
    for steps in ("abc", "nan", "inf", float("nan"), True):
        with pytest.raises(logic.AppError, match="Steps must be a whole number between 1 and "
                                                 f"{logic.MAX_STEPS}, not "):
            logic.settings_for("pretrained", base, steps, None)
    with pytest.raises(logic.AppError, match="not 'abc'"):
        logic.settings_for("pretrained", base, "abc", None)
    with pytest.raises(logic.AppError, match="learning rate must be above 0 and at most 1, not "
                                             "'fast'"):
        logic.settings_for("pretrained", base, None, "fast")


def test_steps_as_text_reach_the_handler_which_says_what_is_wrong(tiny):
    """The page's Steps slider and learning-rate box hand what an API call sends them (text,
    a value out of range) to adapt, which answers with the page's sentence; a number is taken
    as before."""
    fns = app.demo.fns.values() if isinstance(app.demo.fns, dict) else app.demo.fns
    adapt_fn = next(f for f in fns if f.name == "adapt")
    _, _, steps, lr, _ = adapt_fn.inputs
    assert steps.preprocess(20) == 20 and lr.preprocess(0.01) == 0.01
    assert steps.preprocess("abc") == "abc" and steps.preprocess(500) == 500
    assert lr.preprocess("fast") == "fast"
    table, session = app.check_clips(slt()[:1], None, logic.Session(), progress=quiet)
    for bad_steps, bad_lr, match in (("abc", 0, "Steps must be a whole number between 1 and "
                                                "200, not 'abc'"),
                                     (500, 0, "Steps must be a whole number .* not 500"),
                                     (5, "fast", "learning rate must be above 0 .* not 'fast'")):
        with pytest.raises(gr.Error, match=match):
            adapt_all(table, session, steps=steps.preprocess(bad_steps), lr=lr.preprocess(bad_lr))


def test_both_methods_adapt_side_by_side(tiny, tmp_path, monkeypatch):
    """With a meta-learned checkpoint (faked: none can be trained in a test), 'both' adapts from
    each init in turn, draws both loss curves and speaks with both voices."""
    from metatts import adapt as adapting
    from metatts.meta import InnerConfig

    monkeypatch.setenv("METATTS_META_CHECKPOINT", str(tiny_checkpoint(tmp_path / "meta", 2)))
    monkeypatch.setattr(logic, "model_status", lambda init: None)
    monkeypatch.setattr(adapting, "meta_inner_config", lambda base: InnerConfig(steps=3, lr=0.1))
    monkeypatch.setattr(app, "CURVE_SECONDS", 0.0)  # redraw the curve at every step
    assert app.init_choices() == list(app.CHOICES)
    table, session = app.check_clips(slt()[:2], None, logic.Session(), progress=quiet)
    updates = list(app.adapt(table, "both side by side", 4, 0, session, progress=quiet))
    session, curve, note, files = updates[-1]
    assert list(curve["method"]) == ["meta-learned"] * 4 + ["fine-tuning"] * 4
    # the streamed plot is cleared once, where the second method starts, so that the browser
    # draws it anew with both methods (it keeps the first data's methods otherwise)
    assert [i for i, u in enumerate(updates) if u[1] is None] == [4]
    assert "meta-learned in" in note and "fine-tuning in" in note and len(files) == 2
    assert set(session.voices) == {"meta", "pretrained"}
    streamed, (_, _, _, mel_meta, mel_ft, _, files) = speak("Good morning.", session)
    assert streamed["meta"][0][1].size and streamed["pretrained"][0][1].size
    assert mel_meta.shape[2] == mel_ft.shape[2] == 3 and len(files) == 2


def test_preview_speaks_in_the_start_voice_before_adapting(tiny, tmp_path, monkeypatch):
    """Right after the clip check the page speaks in the voice adaptation starts from: the
    meta-learned start where there is one (else fine-tuning's), with its similarity."""
    from metatts import adapt as adapting
    from metatts.meta import InnerConfig

    with pytest.raises(gr.Error, match="Check some clips first"):
        app.preview(logic.Session(), progress=quiet)
    _, session = app.check_clips(slt()[:2], None, logic.Session(), progress=quiet)
    (rate, wav), note = app.preview(session, progress=quiet)
    assert rate == SR and wav.dtype == np.int16 and len(wav) > 0
    assert note.startswith("**Before adapting**, in the fine-tuning start")  # no meta here
    assert -1 <= float(note.split("**")[3]) <= 1 and "Adapt (step 2) refines" in note

    monkeypatch.setenv("METATTS_META_CHECKPOINT", str(tiny_checkpoint(tmp_path / "meta", 2)))
    monkeypatch.setattr(logic, "model_status", lambda init: None)
    monkeypatch.setattr(adapting, "meta_inner_config", lambda base: InnerConfig(steps=3, lr=0.1))
    start = logic.start_voice(list(session.wavs.values()))
    base = logic.load_model("meta")
    adapted_from = adapting.start_params(base, adapting.default_settings("meta", base))
    assert start.init == "meta" and set(start.params) == set(adapted_from)
    assert all(torch.equal(start.params[k], v) for k, v in adapted_from.items())
    assert app.preview(session, progress=quiet)[1].startswith(
        "**Before adapting**, in the meta-learned start")


def test_preview_with_the_report_speaks_with_the_ticked_clips_frames(tiny):
    """The page passes the report table: the preview's frames are corrected by the ticked
    clips' own (metatts.frames), as their adapted voice will speak; the same length of speech."""
    table, session = app.check_clips(slt()[:2], None, logic.Session(), progress=quiet)
    plain = logic.preview(list(session.wavs.values()))  # the start voice alone
    (_, matched), with_frames = app.preview(session, table, progress=quiet)
    assert plain.frames == 0 and "with your clips' frames (" in with_frames
    assert len(matched) == len(plain.wav) and not np.array_equal(matched / 32767, plain.wav)
    rows = pd.DataFrame(table)
    rows["use"] = False
    with pytest.raises(gr.Error, match="No clip is selected"):
        app.preview(session, rows, progress=quiet)


def test_preview_without_the_table_speaks_from_the_clips_the_check_ticked(tiny, tmp_path,
                                                                        monkeypatch):
    """An API call to /preview that leaves the report out speaks from the clips the check
    ticked (and says so), not from a clip it left out; with the report, from the ticked ones."""
    t = np.arange(3 * SR) / SR
    tone = write(tmp_path / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype("f4"))
    table, session = app.check_clips([*slt()[:2], tone], None, logic.Session(),
                                     progress=quiet)
    assert list(table["use"]) == [True, True, False]
    used = []
    real = logic.preview
    monkeypatch.setattr(logic, "preview", lambda wavs, **kw: used.append(
        (list(wavs), [c.name for c in kw.get("clips", ())])) or real(wavs, **kw))
    (_, without), note = app.preview(session, None, progress=quiet)
    (_, with_table), _ = app.preview(session, table, progress=quiet)
    ticked = [p.name for p in slt()[:2]]
    assert used[0][1] == used[1][1] == ticked
    assert all(np.array_equal(a, session.wavs[n]) for a, n in zip(used[0][0], ticked))
    assert len(used[0][0]) == 2 and np.array_equal(without, with_table)
    assert note.endswith("It speaks from the 2 clips the clip check ticked; send the report "
                         "table to choose others.")
    rows = table.copy()
    rows["use"] = [False, True, False]  # what the person ticked on the page
    app.preview(session, rows, progress=quiet)
    assert used[2][1] == ticked[1:]


def test_preview_of_an_encoder_start_is_estimated_from_the_clips(tmp_path, monkeypatch):
    """A start meta-learned through the speaker encoder (meta.start "encoder") is computed from
    the clips being previewed: other clips give another start voice, and it is the encoder's
    vector of their mels, the same one adaptation starts from."""
    from metatts import adapt as adapting

    torch.manual_seed(3)
    config = load_config(TINY.with_name("tiny_v2.json"), {
        "model": {"n_symbols": len(SYMBOLS), "n_speakers": 3}, "data": {"tokens": "phonemes"},
        "meta": {"start": "encoder", "inner": {"groups": ["embedding"], "steps": 2}}})
    meta = save_checkpoint(tmp_path / "meta", FastSpeech2(config.model, config.loss), config,
                           SYMBOLS, ("a", "b", "c"))
    monkeypatch.setenv("METATTS_META_CHECKPOINT", str(meta))
    monkeypatch.setenv("METATTS_CHECKPOINT", str(tiny_checkpoint(tmp_path / "ckpt")))
    _, session = app.check_clips(slt()[:3], None, logic.Session(), progress=quiet)
    wavs = list(session.wavs.values())
    start = logic.start_voice(wavs)
    assert start.init == "meta" and "computed from your clips" in start.source
    base = logic.load_model("meta")
    expected = base.model.encode_speaker([logic.audio.mel_spectrogram(w) for w in wavs])
    assert torch.allclose(start.params["speaker.new"], expected, atol=1e-6)
    assert not torch.allclose(logic.start_voice(wavs[:1]).params["speaker.new"], expected)
    # adapting zero steps from the same clips (the encoder reads no transcript) gives it too
    clips = [adapting.Clip(name, wav, "hello there") for name, wav in session.wavs.items()]
    zero = adapting.adapt(clips, base, adapting.with_changes(
        adapting.default_settings("meta", base), steps=0))
    assert torch.allclose(zero.voice.params["speaker.new"], expected, atol=1e-6)
    (rate, wav), note = app.preview(session, progress=quiet)
    assert rate == SR and len(wav) > 0
    assert note.startswith("**Before adapting**, in the meta-learned start (computed from")


def test_a_thread_lets_go_of_its_openmp_workers_and_computes_on():
    import sys
    import threading

    import torch

    a = torch.randn(256, 256)
    expected = a @ a
    freed = logic.release_compute_threads()
    if sys.platform.startswith("linux"):  # PyTorch's wheels bundle libgomp there
        assert freed
    out = {}

    def work():
        out["product"] = a @ a
        out["freed"] = logic.release_compute_threads()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert torch.allclose(out["product"], expected) and out["freed"] == freed
    assert torch.allclose(a @ a, expected)  # the workers come back when needed


@pytest.fixture
def warming(monkeypatch):
    """A fresh warm-up state for the test; ``WARMED`` is set again afterwards whatever happens,
    so that a failing test does not make later heavy calls wait."""
    monkeypatch.setattr(logic, "_warm_thread", None)
    yield
    logic.WARMED.set()


def test_warm_up_loads_what_a_first_check_and_preview_need(tiny, warming):
    from metatts import asr, speaker, vocoder

    for cache in (speaker.load_encoder, asr.load_whisper, vocoder._load_vocoder, logic._load):
        cache.cache_clear()
    logic.WARMED.clear()
    assert logic.warm_up() == []
    assert logic.WARMED.is_set()
    assert speaker.load_encoder.cache_info().currsize == 1
    assert asr.load_whisper.cache_info().currsize == 1
    assert vocoder._load_vocoder.cache_info().currsize == 1
    assert logic._load.cache_info().currsize == 1  # the one usable checkpoint
    hits = logic._load.cache_info().hits
    logic.load_model("pretrained")  # already loaded: from the cache
    assert logic._load.cache_info().hits == hits + 1


def test_a_model_that_fails_to_warm_up_is_reported_and_calls_go_on(tiny, warming, monkeypatch):
    from metatts import speaker

    def broken(*args, **kwargs):
        raise RuntimeError("no ECAPA here")

    monkeypatch.setattr(speaker, "embed", broken)
    logic.WARMED.clear()
    assert logic.warm_up() == ["ECAPA: RuntimeError: no ECAPA here"]
    assert logic.WARMED.is_set()


def test_a_warm_up_that_cannot_even_find_the_models_still_lets_calls_go_on(warming, monkeypatch):
    def broken():
        raise ValueError("model.json is not an object")

    monkeypatch.setattr(logic, "available_inits", broken)
    logic.start_warm_up().join(60)
    assert logic.WARMED.is_set()


def test_heavy_calls_wait_for_the_warm_up_which_runs_once(warming, monkeypatch):
    import threading
    import time

    release, order = threading.Event(), []

    def slow_warm_up():
        release.wait(10)
        order.append("warmed")
        return []

    monkeypatch.setattr(logic, "warm_up", slow_warm_up)
    thread = logic.start_warm_up()
    assert not logic.WARMED.is_set()
    assert logic.start_warm_up() is thread  # a second call starts nothing

    def heavy():
        with app.friendly():
            order.append("heavy")

    call = threading.Thread(target=heavy)
    call.start()
    time.sleep(0.3)
    assert order == []  # the heavy call waits
    release.set()
    call.join(10)
    thread.join(10)
    assert order == ["warmed", "heavy"]


def test_the_app_warms_up_as_it_starts(monkeypatch):
    calls = []
    monkeypatch.setattr(logic, "start_warm_up", lambda: calls.append("warm-up"))
    monkeypatch.setattr(app.demo, "launch", lambda **kwargs: calls.append("launch"))
    assert app.main([]) == 0
    assert calls == ["warm-up", "launch"]
