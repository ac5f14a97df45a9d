"""metatts in the browser: give a few clips of a voice, adapt, and hear it speak.

    python app.py [--share] [--host 0.0.0.0] [--port 7860]

A thin Gradio view over :mod:`metatts.app_logic`; models load in a background thread as the app
starts (or on first use, where the page is built some other way) and are shared by every user,
while each user's clips and voices stay in their own session state. Named API endpoints
(check_clips, adapt, load_voice, synthesize, score) let ``gradio_client`` drive it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from metatts import app_logic as logic
from metatts import audio as audio_io
from metatts.adapt import ADAPT_STEPS
from metatts.app_logic import LABELS, AppError, Session
from metatts.text import dropped_letters, dropped_symbols

logic.limit_malloc_arenas()  # before Gradio's worker threads exist

# One heavy job (Whisper, adaptation, synthesis, scoring) at a time across every event and
# user: a CPU Space has 2 cores, and one job at a time bounds memory. The rest wait in the
# queue, which shows each person their place.
HEAVY = "heavy"
QUEUE_SIZE = 32  # waiting jobs beyond this are turned away with a message
SESSIONS = 100  # sessions kept in memory (least recently used dropped first)
SESSION_SECONDS = 3600  # a session's clips and voices are dropped an hour after last use
# the voice and speech files a person downloads, each call's in a folder of its own; a folder
# older than DOWNLOAD_SECONDS is removed when a new one is made, and Gradio deletes its own
# copies of files (uploads, outputs; what the page links to) as old once an hour
OUTPUT_ROOT = Path(tempfile.gettempdir()) / f"metatts-app-{os.getuid()}"
DOWNLOAD_SECONDS = 24 * 3600
# The live loss curve is redrawn at most this often while adapting. Sending the page an update
# every step (with the session's clips and voices) took the steps' cores and lock: 5 clips x 50
# steps took 11.9 s in the app against 7.1 s from `python -m metatts adapt`.
CURVE_SECONDS = 0.5
CHOICES = {"meta-learned": ("meta",), "fine-tuning": ("pretrained",),
           "both side by side": ("meta", "pretrained")}
DATATYPES = ["bool", "str", "number", "number", "number", "number", "number", "str", "str",
             "str"]
COLUMNS = ["use", "clip", "seconds", "clipped %", "SNR dB", "silence %", "confidence",
           "transcript", "problem", "notes"]
SCORE_COLUMNS = ["method", "speaker similarity", "WER", "Whisper heard"]
# the reasons a clip is unticked stay readable beside a long transcript
COLUMN_WIDTHS = ["7%", "11%", "7%", "7%", "6%", "7%", "9%", "20%", "14%", "12%"]
# what browsers record and phones save, besides the audio types the file picker knows
UPLOAD_TYPES = ["audio", ".webm", ".weba", ".opus", ".ogg", ".m4a", ".mp3", ".flac", ".wav"]
ABOUT = """
**Meta-learned initialization.** Fine-tuning starts a new voice from the average of the voices the
model was trained on and nudges it towards your clips. The *meta-learned* start is computed from
your clips by a speaker encoder, and the weights that adaptation changes were meta-trained
(first-order MAML) so that a few steps from that start fit a new voice. Choose *both* to hear the
two side by side on the same clips. What the project's benchmark measured (7 unseen natural voices,
105 clips per cell): after 10 steps the meta-learned start is as close to the voice as fine-tuning
is after 100, but the same start and steps *without* meta-training do just as well, so the gain
comes from starting at the encoder's estimate, not yet from meta-learning (README, "The full
preset").

**Consent and responsible use.** Only use voices you have the right to use: your own, or a
person's who has agreed to it. Do not use cloned voices to deceive, impersonate or harass. Clips
and voices stay in your session and are not kept after it ends.
"""


@contextlib.contextmanager
def friendly():
    """Problems a person can fix become a message in the page, not a traceback. Every heavy call
    runs inside it; on the way out its thread lets go of its idle OpenMP workers, so that the
    next heavy call, on another of Gradio's threads or adaptation's own, runs at full speed
    (logic.release_compute_threads). It first waits for the models' warm-up, if one is running
    (logic.start_warm_up), so that no model is loaded twice at once."""
    if not logic.WARMED.wait(logic.WARM_WAIT_SECONDS):
        print(f"the models' warm-up took over {logic.WARM_WAIT_SECONDS:.0f} s; this call goes "
              "on and may load a model beside it", flush=True)
    try:
        yield
    except AppError as err:
        raise gr.Error(str(err), print_exception=False) from None
    finally:
        logic.release_compute_threads()


def status_markdown() -> str:
    status = logic.available_inits()
    if all(status.values()):
        return f"⚠️ {logic.NO_MODEL}"
    notes = [f"The {LABELS[i]} option is off: {why}." for i, why in status.items() if why]
    return " ".join(notes)


def init_choices() -> list[str]:
    usable = {i for i, why in logic.available_inits().items() if why is None}
    return [c for c, inits in CHOICES.items() if set(inits) <= usable]


def report_table(reports: list[logic.ClipReport]) -> pd.DataFrame:
    return pd.DataFrame([[r.use, r.name, r.seconds, round(100 * r.clipped, 2), r.snr_db,
                          round(100 * r.silence), r.confidence, r.transcript, r.problem or "",
                          r.note] for r in reports], columns=COLUMNS)


def report_warning(reports: list[logic.ClipReport]) -> None:
    bad = [r for r in reports if not r.use]
    if bad:
        gr.Warning(f"{len(bad)} of {len(reports)} clips would hurt adaptation and are unticked; "
                   "see the 'problem' column.")
    noted = [r for r in reports if r.note]
    if noted:
        gr.Info(f"{len(noted)} of {len(reports)} clips have notes (split, mixed to mono, turned "
                "up...); see the 'notes' column.")


def ffmpeg_on_path() -> None:
    """Gradio encodes streamed audio with a program named ``ffmpeg`` on PATH. Where none is
    installed, link the static build from the imageio-ffmpeg package there."""
    if shutil.which("ffmpeg"):
        return
    try:
        exe = audio_io.ffmpeg_exe()
    except OSError:
        return  # streaming falls back to Gradio's own message; uploads say what to install
    folder = Path(tempfile.gettempdir()) / f"metatts-ffmpeg-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    with contextlib.suppress(FileExistsError):
        (folder / "ffmpeg").symlink_to(exe)
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


# --- handlers -------------------------------------------------------------------------------

def use_example(name: str | None, session: Session):
    """Pick a shipped example voice: its clips, checked with their own transcripts."""
    paths = logic.example_voices().get(name or "")
    if not paths:
        raise gr.Error(f"There is no example voice {name!r}; choose one from the list.",
                       print_exception=False)
    with friendly():
        reports, wavs = logic.check_clips(paths)
    report_warning(reports)
    return [str(p) for p in paths], report_table(reports), new_clips(session, wavs, reports)


def output_folder(kind: str) -> Path:
    """A new folder under OUTPUT_ROOT for the files of one call; removes the folders there that
    are older than DOWNLOAD_SECONDS first, so that a long-running Space does not fill its disk
    (5 MB a side-by-side adaptation)."""
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - DOWNLOAD_SECONDS
    for old in OUTPUT_ROOT.iterdir():
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=OUTPUT_ROOT))


def check_clips(files, recording, session: Session, table=None,
                progress=gr.Progress()):  # noqa: B008 (Gradio's pattern)
    """Read and check the clips; a clip checked before (same name, same audio) keeps the
    transcript and tick that ``table``, the report on the page, gives it."""
    paths = [str(f) for f in (files or [])] + ([recording] if recording else [])
    progress(0, desc="Reading clips and transcribing them with Whisper")
    with friendly():
        reports, wavs = logic.check_clips(paths)
    report_warning(reports)
    out = report_table(reports)
    kept = logic.kept_edits(table_rows(table), session.proposed, session.wavs, wavs)
    for i, row in out.iterrows():
        if row["clip"] in kept and kept[row["clip"]] != (row["use"], row["transcript"]):
            out.at[i, "use"], out.at[i, "transcript"] = kept[row["clip"]]
            out.at[i, "notes"] = " ".join(filter(None, [row["notes"], "Your transcript and "
                                                        "tick from before are kept."]))
    return out, new_clips(session, wavs, reports)


def new_clips(session: Session, wavs: dict, reports: list[logic.ClipReport]) -> Session:
    """The session with newly checked clips and what their ``reports`` proposed (ticks,
    transcripts); says so when voices of earlier clips are set aside."""
    session, gone = logic.with_clips(session, wavs, {r.name: (r.use, r.transcript)
                                                     for r in reports})
    if gone:
        names = " and ".join(LABELS[i] for i in gone)
        gr.Info(f"New clips: the {names} voice adapted from your earlier clips is set aside, so "
                "that it is not spoken or scored as this voice. Its file stays under 'Download "
                "the adapted voice' until you adapt again; adapt now for these clips.")
    return session


def table_rows(table) -> list[tuple[bool, str, str]]:
    """(use, clip, transcript) of the report table as the page holds it."""
    rows = [] if table is None else list(pd.DataFrame(table)[["use", "clip", "transcript"]]
                                         .itertuples(index=False, name=None))
    return [(str(u).lower() in ("true", "1"), n, t) for u, n, t in rows]


def preview(session: Session, table=None,
            progress=gr.Progress()):  # noqa: B008 (Gradio's pattern)
    """Speak a sample sentence in the start voice of the ticked clips, before adapting, each
    frame corrected by their own frames through their transcripts (metatts.frames), as their
    adapted voice will speak. The ticks and transcripts are the report ``table``'s; without it
    (an API call that leaves it out), those the clip check proposed, and the note says so."""
    progress(0, desc="Speaking a sample in the start voice")
    with friendly():
        rows = table_rows(table) or [(use, name, text) for name, (use, text)
                                     in session.proposed.items()]
        clips = logic.chosen_clips(session, rows) if rows else []
        out = logic.preview([c.wav for c in clips], clips=clips)
    how = f" with your clips' frames ({out.frames:,})" if out.frames else ""
    note = (f"**Before adapting**, in {out.source}{how}: speaker similarity to your clips "
            f"**{out.similarity:.2f}** (ECAPA cosine; 1 is the same voice). Adapt (step 2) "
            "refines this voice.")
    if table is None:
        note += (f" It speaks from the {len(clips)} clip{'s' * (len(clips) != 1)} the clip "
                 "check ticked; send the report table to choose others.")
    return (out.sample_rate, (out.wav * 32767).astype("int16")), note


def adapt(table, choice: str, steps: float, lr: float, session: Session,
          progress=gr.Progress()):  # noqa: B008 (Gradio's pattern)
    if choice not in CHOICES:
        raise gr.Error(f"Choose how to start adapting: one of {', '.join(init_choices())}. "
                       if init_choices() else logic.NO_MODEL, print_exception=False)
    rows = table_rows(table)
    curve: list[dict] = []
    drawn = None  # when the loss curve was last sent (perf_counter; None: not yet)
    voices, seconds = dict(session.voices), dict(session.seconds)
    with friendly():
        clips = logic.chosen_clips(session, rows)
        for event in logic.adapt_voices(clips, CHOICES[choice], steps, lr or None):
            if isinstance(event, logic.Step):
                method = LABELS[event.init]
                if curve and curve[-1]["method"] != method:
                    # the plot keeps the methods of its first data while it streams: clear it
                    # once so that it is drawn anew with the second method's line as well
                    yield gr.skip(), None, "Adapting…", None
                curve.append({"step": event.step, "loss": event.loss, "method": method})
                progress((event.step, event.steps), desc=f"Adapting ({LABELS[event.init]})")
                now = time.perf_counter()
                if (drawn is None or now - drawn >= CURVE_SECONDS
                        or event.step == event.steps):
                    # the session (clips, voices) is sent once at the end, not every step
                    drawn = now
                    yield gr.skip(), pd.DataFrame(curve), "Adapting…", None
            else:
                voices[event.init] = event.result.voice
                seconds[event.init] = event.result.seconds
    files = []
    folder = output_folder("voice")
    for init in CHOICES[choice]:
        files.append(str(voices[init].save(folder / f"voice-{init}.safetensors")))
    done = ", ".join(f"{LABELS[i]} in {seconds[i]:.1f} s (loss {voices[i].losses[0]:.3f} → "
                     f"{voices[i].final_loss:.3f})" for i in CHOICES[choice])
    key = logic.clips_key(session.wavs)
    session = dataclasses.replace(  # the last speech was another voice's: dropped
        session, voices=voices, seconds=seconds, outputs={}, text="",
        made_from={**session.made_from, **dict.fromkeys(CHOICES[choice], key)})
    plural = "s" * (len(clips) != 1)
    yield session, pd.DataFrame(curve), f"Adapted {len(clips)} clip{plural}: {done}.", files


def load_voice(file, session: Session):
    if not file:
        raise gr.Error("Upload a voice file (.safetensors) made by this app or "
                       "`python -m metatts adapt`.", print_exception=False)
    with friendly():
        init, voice = logic.load_voice(str(file))
    session = dataclasses.replace(
        session, voices={**session.voices, init: voice}, outputs={}, text="",
        seconds={i: t for i, t in session.seconds.items() if i != init},
        made_from={**session.made_from, init: ""})
    return session, (f"Loaded a {LABELS[init]} voice adapted on {voice.clips} "
                     f"clip{'s' * (voice.clips != 1)}.")


def ready_to_speak(text: str, session: Session, voice_files=None, pace=1.0) -> None:
    """The page's check before Speak: a refusal here leaves the last speech on the page (an
    error in ``synthesize`` itself marks every one of its outputs). ``voice_files``: the page's
    download box; voices there but none in the session mean the session was dropped."""
    if not session.voices:
        dropped = voice_files and not (session.checked or session.wavs)
        raise gr.Error(logic.EXPIRED if dropped else
                       "There is no voice yet: adapt one (step 2) or upload a voice file.",
                       print_exception=False)
    with friendly():
        for init, voice in session.voices.items():
            logic.speak_stream(init, voice, text, pace)  # checks text, rate and voice; no audio


def synthesize(text: str, session: Session, pace=1.0,
               progress=gr.Progress()):  # noqa: B008 (Gradio's pattern)
    """Speak ``text`` with each voice of the session at speaking rate ``pace`` (1: the voice's
    own), streaming each sentence's audio as soon as it is made; the mels, a note, the whole
    speech as wav files (the audio an API client gets) and the session's outputs (for scoring)
    come at the end."""
    if not session.voices:
        raise gr.Error("There is no voice yet: adapt one (step 2) or upload a voice file.",
                       print_exception=False)
    with friendly():
        text, pace = logic.check_text(text), logic.check_pace(pace)
        streams = {init: logic.speak_stream(init, voice, text, pace)  # every voice checked first
                   for init, voice in session.voices.items()}
    outputs, mels, notes = {}, {}, []
    for n, (init, chunks) in enumerate(streams.items()):
        progress((n, len(streams)), desc=f"Speaking ({LABELS[init]})")
        made = []
        with friendly():
            for chunk in chunks:
                made.append(chunk)
                pcm = (chunk.sample_rate, (chunk.wav * 32767).astype("int16"))  # 16-bit PCM
                yield (gr.skip(), pcm if init == "meta" else gr.skip(),
                       pcm if init == "pretrained" else gr.skip(), *[gr.skip()] * 4)
        outputs[init] = np.concatenate([c.wav for c in made])
        mels[init] = logic.mel_image(logic.concat_mels([m for c in made for m in c.mels]))
        took = session.seconds.get(init)
        notes.append(f"{LABELS[init]}: {len(outputs[init]) / made[0].sample_rate:.1f} s of audio"
                     + (f", adapted in {took:.1f} s" if took is not None else ""))
    if pace != 1:
        notes.append(f"spoken at {pace:g} times the voice's own pace")
    folder = output_folder("speech")
    files = []
    for init, wav in outputs.items():
        audio_io.save_audio(folder / f"speech-{init}.wav", wav, made[0].sample_rate)
        files.append(str(folder / f"speech-{init}.wav"))
    dropped = dropped_letters(text)
    if dropped:
        notes.append(f"Not spoken: {dropped} (the model reads English in Latin letters)")
    symbols = dropped_symbols(text)
    if symbols:
        notes.append(f"Not spoken: {symbols} (emoji and symbols are not read aloud; write what "
                     "they say in words)")
    session = dataclasses.replace(session, outputs=outputs, text=text)
    yield (session, gr.skip(), gr.skip(), mels.get("meta"), mels.get("pretrained"),
           "; ".join(notes) + ".", files)


def score(session: Session, progress=gr.Progress()):  # noqa: B008 (Gradio's pattern)
    progress(0, desc="Scoring with ECAPA and Whisper")
    with friendly():
        scores = logic.score_outputs(session)
    if not session.wavs:
        gr.Info("Speaker similarity is left blank: there are no clips to compare with (this "
                "voice was loaded from a file). Check clips of the voice (step 1) to score it.")
    return pd.DataFrame([[LABELS[s.init], s.similarity, s.wer, s.transcript] for s in scores],
                        columns=SCORE_COLUMNS)


# --- layout ---------------------------------------------------------------------------------

def empty_is_none(table: gr.Dataframe) -> gr.Dataframe:
    """``table`` reads a missing value (an API call that leaves it out, or sends null) as None,
    which the functions answer with a message, instead of failing inside Gradio (6.31's
    Dataframe.preprocess reads ``payload.headers`` of None)."""
    own = table.preprocess

    def preprocess(payload):
        return None if payload is None else own(payload)

    table.preprocess = preprocess
    return table


def checked_by_the_handler(number: gr.Slider | gr.Number) -> gr.Slider | gr.Number:
    """``number`` hands a value it cannot take (text such as "abc" from an API call, or one out
    of its range) to the function unchanged, which answers with the page's sentence
    (logic.settings_for), instead of failing inside Gradio (6.31's Slider.preprocess compares
    text with its minimum: a TypeError, which a client is told only as "The upstream Gradio app
    has raised an exception")."""
    own = number.preprocess

    def preprocess(payload):
        try:
            return own(payload)
        except (TypeError, ValueError, gr.Error):
            return payload

    number.preprocess = preprocess
    return number


def build_demo() -> gr.Blocks:
    """The app. Builds the page only: it loads no model (``main`` starts the warm-up)."""
    choices = init_choices()
    has_meta = any("meta" in CHOICES[c] for c in choices)
    with gr.Blocks(title="metatts: few-shot voice adaptation",
                   delete_cache=(SESSION_SECONDS, DOWNLOAD_SECONDS)) as demo:
        session = gr.State(Session(), time_to_live=SESSION_SECONDS)
        gr.Markdown("# metatts: a new voice from a few clips")
        gr.Markdown(status_markdown())
        with gr.Accordion("What is a meta-learned initialization? And please use voices "
                          "responsibly.", open=False):
            gr.Markdown(ABOUT)

        gr.Markdown("## 1. Give a voice (1 to 10 clips of a few seconds of speech)")
        with gr.Row():
            example = gr.Dropdown(list(logic.example_voices()), label="Example voice",
                                  value=None)
            files = gr.File(file_count="multiple", file_types=UPLOAD_TYPES, type="filepath",
                            label="Audio clips", elem_id="clips")
            recording = gr.Audio(sources=["microphone", "upload"], type="filepath",
                                 label="Or record a clip")
        check = gr.Button("Check clips", elem_id="check")
        report = gr.Dataframe(headers=COLUMNS, datatype=DATATYPES, interactive=True, wrap=True,
                              column_widths=COLUMN_WIDTHS,
                              label="Clip report (edit transcripts; untick clips to leave out)",
                              elem_id="report")
        empty_is_none(report)
        with gr.Row():
            preview_audio = gr.Audio(label="Preview: your voice before adapting", type="numpy",
                                     elem_id="preview", interactive=False)
            preview_note = gr.Markdown(elem_id="preview-note")

        gr.Markdown("## 2. Adapt")
        with gr.Row():
            init = gr.Radio(choices, value=choices[-1] if choices else None,
                            label="Start from", interactive=bool(choices))
            steps = gr.Slider(1, logic.MAX_STEPS, value=ADAPT_STEPS, step=1, label="Steps")
        with gr.Accordion("Advanced", open=False):
            lr = gr.Number(0, label="Learning rate (0: the method's default)")
        checked_by_the_handler(steps)
        checked_by_the_handler(lr)
        adapt_btn = gr.Button("Adapt", variant="primary", interactive=bool(choices),
                              elem_id="adapt")
        curve = gr.LinePlot(x="step", y="loss", color="method", label="Support loss")
        adapt_note = gr.Markdown(elem_id="adapt-note")
        voice_files = gr.File(label="Download the adapted voice", file_count="multiple")
        with gr.Accordion("Use a voice file instead", open=False):
            voice_upload = gr.File(file_types=[".safetensors"], type="filepath",
                                   label="Voice file")
            load_btn = gr.Button("Use this voice")

        gr.Markdown("## 3. Speak")
        # no max_length: a browser would cut a longer paste silently; synthesize says instead
        text = gr.Textbox("The quick brown fox jumps over the lazy dog.",
                          label=f"Text (up to {logic.MAX_TEXT_CHARS} characters)",
                          elem_id="text")
        pace = checked_by_the_handler(gr.Slider(
            *logic.PACE_RANGE, value=1.0, step=0.05, elem_id="pace",
            label="Speaking rate (1: the voice's own pace; 2: twice as fast)"))
        speak_btn = gr.Button("Speak", variant="primary", elem_id="speak")
        with gr.Row():
            # streamed: each sentence plays as soon as it is made
            audio_meta = gr.Audio(label="Meta-learned", type="numpy", elem_id="audio-meta",
                                  visible=has_meta, streaming=True, autoplay=has_meta)
            audio_ft = gr.Audio(label="Fine-tuning", type="numpy", elem_id="audio-ft",
                                streaming=True, autoplay=not has_meta)
        with gr.Row():
            mel_meta = gr.Image(label="Mel spectrogram (meta-learned)", type="numpy",
                                visible=has_meta)
            mel_ft = gr.Image(label="Mel spectrogram (fine-tuning)", type="numpy")
        speak_note = gr.Markdown(elem_id="speak-note")
        speech_files = gr.File(label="Download the speech (wav)", file_count="multiple",
                               elem_id="speech-files")
        scores = gr.Dataframe(label="Scores: ECAPA similarity to your clips, Whisper WER",
                              headers=SCORE_COLUMNS, elem_id="scores")

        heavy = {"concurrency_id": HEAVY, "concurrency_limit": 1}
        previewed = {"fn": preview, "inputs": [session, report],
                     "outputs": [preview_audio, preview_note], **heavy}
        example.input(use_example, [example, session], [files, report, session],
                      api_name="example", **heavy).success(**previewed,
                                                           api_name="preview_example")
        check.click(check_clips, [files, recording, session, report], [report, session],
                    api_name="check_clips", **heavy).success(**previewed, api_name="preview")
        adapt_btn.click(adapt, [report, init, steps, lr, session],
                        [session, curve, adapt_note, voice_files], api_name="adapt", **heavy)
        # in the heavy queue too: every heavy call returns the session it read when it began,
        # so a voice loaded while one runs would be lost when it ends
        load_btn.click(load_voice, [voice_upload, session], [session, adapt_note],
                       api_name="load_voice", **heavy)
        ready = speak_btn.click(ready_to_speak, [text, session, voice_files, pace], None,
                                api_visibility="private")
        ready.success(synthesize, [text, session, pace],
                      [session, audio_meta, audio_ft, mel_meta, mel_ft, speak_note, speech_files],
                      api_name="synthesize", **heavy).success(score, session, scores,
                                                              api_name="score", **heavy)
    demo.queue(max_size=QUEUE_SIZE)
    ffmpeg_on_path()
    return demo


def launch_options() -> dict:
    """Files the page may serve besides its own uploads (the example voices), and how many
    sessions it keeps."""
    return {"allowed_paths": [str(p) for p in logic.EXAMPLE_DIRS if p.is_dir()],
            "state_session_capacity": SESSIONS}


demo = build_demo()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    parser.add_argument("--host", help="address to listen on (default: $GRADIO_SERVER_NAME or "
                                       "127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    args = parser.parse_args(argv)
    logic.start_warm_up()  # the models load while the page opens and the first clips are made
    demo.launch(share=args.share or None, server_name=args.host, server_port=args.port,
                **launch_options())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
