"""What the Gradio app does, without Gradio: find the models, check clips, adapt, speak, score.

``app.py`` is a thin view over these functions. Models are found from ``$METATTS_CHECKPOINT``
(the pretrained base, for fine-tuning) and ``$METATTS_META_CHECKPOINT`` (the meta-learned one),
else the shipped ``checkpoints/<init>/``; they load on first use and are shared by every user.
Everything a user gives or makes lives in their own :class:`Session`.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metatts import adapt as adapting
from metatts import audio
from metatts.model.checkpoint import (
    Checkpoint,
    CheckpointError,
    find_checkpoint,
    read_metadata,
)
from metatts.voice import Voice, VoiceError

ENV = {"meta": "METATTS_META_CHECKPOINT", "pretrained": "METATTS_CHECKPOINT"}
LABELS = {"meta": "meta-learned", "pretrained": "fine-tuning"}
ASR_MODEL = os.environ.get("METATTS_ASR_MODEL", adapting.ASR_MODEL)
MAX_CLIPS = 10
MAX_TEXT_CHARS = 400
MAX_STEPS = 200
# Clip checks: thresholds a clip must pass to be used without a warning.
MIN_SPEECH_SECONDS = 0.5
MAX_CLIPPED = 0.001  # fraction of samples at full scale
MIN_SNR_DB = 15.0  # loud frames (95th pct) over the noise floor (10th pct), 20 ms frames
MAX_SILENCE = 0.6  # fraction of frames more than 40 dB below the loudest
REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DIRS = (Path(__file__).resolve().parent / "eval_speakers", REPO / "tests/fixtures/speech")
NO_MODEL = ("No trained model is installed, so this app cannot adapt or speak yet. Train one with "
            "`python -m metatts train --config configs/base.json` and put the checkpoint in "
            "`checkpoints/pretrained/` (a meta-learned one in `checkpoints/meta/`), or point "
            "`$METATTS_CHECKPOINT` / `$METATTS_META_CHECKPOINT` at checkpoint directories, then "
            "restart the app.")


class AppError(ValueError):
    """Something a person can fix: the message says what was wrong and what to do."""


# --- models ---------------------------------------------------------------------------------

def checkpoint_path(init: str) -> Path:
    """Where the checkpoint for ``init`` is: its environment variable, else the shipped one."""
    return Path(os.environ.get(ENV[init]) or adapting.default_checkpoint(init))


def model_status(init: str) -> str | None:
    """None if ``init`` can be used, else a sentence saying why not. Reads no weights."""
    path = checkpoint_path(init)
    try:
        meta = read_metadata(find_checkpoint(path))
    except CheckpointError:
        return f"no {LABELS[init]} checkpoint was found at {path}"
    if init == "meta" and not (meta.get("config", {}).get("meta") or {}).get("inner"):
        return f"{path} is not a meta-learned checkpoint (its config has no meta.inner settings)"
    return None


def available_inits() -> dict[str, str | None]:
    """init -> None (usable) or the reason it is not."""
    return {init: model_status(init) for init in adapting.INITS}


@functools.cache
def _load(init: str, path: str, mtime_ns: int) -> Checkpoint:
    return adapting.load_base(init, path)


def load_model(init: str) -> Checkpoint:
    """The checkpoint for ``init``, loaded once per process (reloaded if the file changes)."""
    reason = model_status(init)
    if reason is not None:
        raise AppError(f"The {LABELS[init]} model is not available: {reason}. {NO_MODEL}")
    directory = find_checkpoint(checkpoint_path(init))
    return _load(init, str(directory), (directory / "model.safetensors").stat().st_mtime_ns)


def example_voices() -> dict[str, list[Path]]:
    """Shipped example voices: speaker name -> its wav clips (held-out speakers first)."""
    found: dict[str, list[Path]] = {}
    for root in EXAMPLE_DIRS:
        for folder in sorted(p for p in root.glob("*") if p.is_dir()):
            wavs = sorted(folder.glob("*.wav"))[:MAX_CLIPS]
            if wavs and folder.name not in found:
                found[folder.name] = wavs
    return found


# --- clips ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClipReport:
    name: str
    seconds: float  # speech after trimming leading and trailing silence
    clipped: float  # fraction of samples at full scale, before normalization
    snr_db: float  # estimated signal-to-noise ratio
    silence: float  # fraction of the clip that is silence
    transcript: str
    confidence: float  # Whisper's (0, 1]; 1.0 for a transcript given beside the clip
    problem: str | None  # why using it would hurt, or None

    @property
    def use(self) -> bool:
        return self.problem is None


def measure(wav: np.ndarray, sample_rate: int) -> tuple[float, float, float]:
    """(clipped fraction, SNR in dB, silent fraction) of a raw waveform (T,)."""
    clipped = float(np.mean(np.abs(wav) >= 0.999))
    frame = max(1, int(0.02 * sample_rate))
    n = max(1, len(wav) // frame)
    rms = np.sqrt(np.mean(np.resize(wav, n * frame).reshape(n, frame) ** 2, axis=1) + 1e-10)
    db = 20 * np.log10(rms)  # (n,) frame levels in dBFS
    snr = float(np.percentile(db, 95) - np.percentile(db, 10))
    silence = float(np.mean(db < db.max() - 40))
    return clipped, snr, silence


def clip_problem(seconds: float, clipped: float, snr_db: float, silence: float,
                 transcript: str, confidence: float) -> str | None:
    """The first reason a clip would hurt adaptation, as a sentence, or None."""
    if seconds < MIN_SPEECH_SECONDS:
        return f"only {seconds:.1f} s of speech; record a full sentence."
    if seconds > adapting.MAX_CLIP_SECONDS:
        return (f"{seconds:.0f} s of speech; clips must be at most "
                f"{adapting.MAX_CLIP_SECONDS:.0f} s. Cut it into sentences.")
    if clipped > MAX_CLIPPED:
        return f"{clipped:.1%} of samples are clipped (too loud); record a little quieter."
    if snr_db < MIN_SNR_DB:
        return f"noisy: about {snr_db:.0f} dB above the noise; record somewhere quieter."
    if silence > MAX_SILENCE:
        return f"{silence:.0%} silence; cut the pauses or record again."
    return adapting.transcript_problem(transcript, confidence, adapting.MIN_CONFIDENCE)


@dataclass(frozen=True)
class Session:
    """One user's clips, voices and outputs (kept in gr.State; never shared)."""

    wavs: dict[str, np.ndarray] = field(default_factory=dict)  # name -> prepared (T,) at 22.05k
    voices: dict[str, Voice] = field(default_factory=dict)  # init -> adapted voice
    seconds: dict[str, float] = field(default_factory=dict)  # init -> adaptation time
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # init -> last synthesis
    text: str = ""  # what the outputs say


def check_clips(paths: Sequence[str | Path], transcripts: Sequence[str | None] | None = None,
                ) -> tuple[list[ClipReport], dict[str, np.ndarray]]:
    """Read and check up to MAX_CLIPS files. A transcript comes from ``transcripts`` (same order),
    else a ``.txt`` beside the file, else Whisper. Returns the reports and the usable waveforms."""
    if not paths:
        raise AppError("Give at least one clip: record one, upload files, or pick an example.")
    if len(paths) > MAX_CLIPS:
        raise AppError(f"{len(paths)} clips given; use at most {MAX_CLIPS} (a few sentences of "
                       "clean speech are enough).")
    reports: list[ClipReport | None] = []
    wavs: dict[str, np.ndarray] = {}
    pending: list[tuple[int, str, np.ndarray, tuple[float, float, float], str | None]] = []
    for i, path in enumerate(map(Path, paths)):
        name = _unique(path.name, wavs)
        try:
            raw = audio.load_audio(path, audio.SAMPLE_RATE)
        except audio.AudioError as err:
            reports.append(ClipReport(name, 0.0, 0.0, 0.0, 0.0, "", 0.0,
                                      str(err).replace(str(path), "this file")))
            continue
        wav = audio.normalize_loudness(audio.trim_silence(raw, audio.SAMPLE_RATE))
        given = transcripts[i] if transcripts else None
        txt = path.with_suffix(".txt")
        if not given and txt.is_file():
            given = txt.read_text(encoding="utf-8").strip()
        wavs[name] = wav
        pending.append((i, name, wav, measure(raw, audio.SAMPLE_RATE), given))
        reports.append(None)
    heard = _transcribe([w for _, _, w, _, g in pending if not g])
    for i, name, wav, (clipped, snr, silence), given in pending:
        text, confidence = (given, 1.0) if given else next(heard)
        seconds = len(wav) / audio.SAMPLE_RATE
        reports[i] = ClipReport(name, round(seconds, 2), clipped, round(snr, 1), silence, text,
                                round(confidence, 2),
                                clip_problem(seconds, clipped, snr, silence, text, confidence))
    return [r for r in reports if r is not None], wavs


def _unique(name: str, taken: dict) -> str:
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{Path(name).stem} ({n}){Path(name).suffix}"
    return out


def _transcribe(wavs: list[np.ndarray]) -> Iterator[tuple[str, float]]:
    if not wavs:
        return iter(())
    from metatts.asr import transcribe_rechecked

    short = [w[: int(adapting.MAX_CLIP_SECONDS * audio.SAMPLE_RATE)] for w in wavs]
    return iter([(t.text, t.confidence)
                 for t in transcribe_rechecked(short, audio.SAMPLE_RATE, model=ASR_MODEL,
                                               recheck_model=adapting.RECHECK_MODEL,
                                               recheck_below=adapting.RECHECK_BELOW)])


def chosen_clips(session: Session, rows: Sequence[tuple[bool, str, str]]) -> list[adapting.Clip]:
    """The clips a user kept: rows of (use, name, transcript) from the report table."""
    clips = []
    for use, name, text in rows:
        if not use:
            continue
        if name not in session.wavs:
            raise AppError(f"{name}: this clip could not be read; untick it or give another.")
        if not str(text).strip():
            raise AppError(f"{name}: its transcript is empty; write what is said in it.")
        clips.append(adapting.Clip(name, session.wavs[name], str(text).strip()))
    if not clips:
        raise AppError("No clip is selected. Tick at least one clip in the report, or give "
                       "better clips.")
    return clips


# --- adaptation -----------------------------------------------------------------------------

def settings_for(init: str, base: Checkpoint, steps: int | None, lr: float | None
                 ) -> adapting.AdaptSettings:
    """The default settings of ``init`` with the user's steps and learning rate."""
    settings = adapting.default_settings(init, base)
    changes = {}
    if steps:
        if not 1 <= int(steps) <= MAX_STEPS:
            raise AppError(f"Steps must be between 1 and {MAX_STEPS}, not {steps}.")
        changes["steps"] = int(steps)
    if lr:
        if not 0 < float(lr) <= 1:
            raise AppError(f"The learning rate must be above 0 and at most 1, not {lr}.")
        changes["lr"] = float(lr)
    return adapting.with_changes(settings, **changes)


@dataclass(frozen=True)
class Step:
    """One adaptation step of one method (for the progress bar and the loss curve)."""

    init: str
    step: int
    steps: int
    loss: float


@dataclass(frozen=True)
class Done:
    init: str
    result: adapting.Adaptation


def adapt_voices(clips: Sequence[adapting.Clip], inits: Sequence[str], steps: int | None = None,
                 lr: float | None = None) -> Iterator[Step | Done]:
    """Adapt to ``clips`` from each init in turn, yielding every step as it happens and each
    finished adaptation. Errors become :class:`AppError` with the library's sentence."""
    for init in inits:
        base = load_model(init)
        try:
            settings = settings_for(init, base, steps, lr)
        except adapting.AdaptError as err:
            raise AppError(str(err)) from None
        yield from _run(init, functools.partial(adapting.adapt, clips, base, settings))


def _run(init: str, work: Callable[[Callable], adapting.Adaptation]) -> Iterator[Step | Done]:
    """Run ``work`` in a thread and yield its steps as they come (so a UI can redraw)."""
    events: queue.Queue = queue.Queue()

    def target() -> None:
        try:
            events.put(Done(init, work(lambda p: events.put(Step(init, p.step, p.steps, p.loss)))))
        except Exception as err:  # noqa: BLE001 (raised again in the caller's thread)
            events.put(err)

    threading.Thread(target=target, daemon=True).start()
    while True:
        event = events.get()
        if isinstance(event, adapting.AdaptError):
            raise AppError(str(event)) from None
        if isinstance(event, Exception):
            raise event
        yield event
        if isinstance(event, Done):
            return


def load_voice(path: str | Path) -> tuple[str, Voice]:
    """Read an uploaded voice file and check it fits the installed model it was made for.
    Returns (init, voice)."""
    try:
        voice = Voice.load(path)
    except VoiceError as err:
        raise AppError(str(err).replace(str(path), "This file")) from None
    init = voice.settings.get("init", "pretrained")
    if init not in adapting.INITS:
        raise AppError(f"This voice file names an unknown initialization {init!r}.")
    base = load_model(init)
    try:
        voice.check_base(base)
    except VoiceError as err:
        raise AppError(f"This voice file was made for another model, so it cannot be used "
                       f"here: {err}") from None
    return init, voice


# --- synthesis and scores -------------------------------------------------------------------

def check_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise AppError("Type some text to speak.")
    if len(text) > MAX_TEXT_CHARS:
        raise AppError(f"The text is {len(text)} characters long; the limit here is "
                       f"{MAX_TEXT_CHARS}. Shorten it, or use `python -m metatts synthesize` "
                       "for long text.")
    return text


def speak(init: str, voice: Voice, text: str):
    """Synthesize ``text`` with an adapted voice -> :class:`metatts.synthesis.Synthesis`."""
    from metatts.synthesis import synthesize
    from metatts.text import TextError

    try:
        return synthesize(load_model(init), check_text(text), params=voice.params)
    except (TextError, CheckpointError) as err:
        raise AppError(str(err)) from None


@dataclass(frozen=True)
class Score:
    init: str
    similarity: float  # mean ECAPA cosine of the output to the given clips
    wer: float  # Whisper's transcript of the output against the text
    transcript: str


def score_outputs(session: Session) -> list[Score]:
    """Speaker similarity to the user's clips and Whisper WER of each output in the session."""
    if not session.outputs:
        raise AppError("Synthesize something first; then it can be scored.")
    if not session.wavs:
        raise AppError("There are no clips to compare with (this voice was loaded from a file); "
                       "give clips of the voice to score speaker similarity.")
    from eval.score import (
        score_clips,  # the project's one scoring path (Whisper + ECAPA)
    )

    inits = list(session.outputs)
    scores = score_clips([session.outputs[i] for i in inits], audio.SAMPLE_RATE,
                         [session.text] * len(inits), list(session.wavs.values()),
                         asr_model=ASR_MODEL)
    return [Score(i, round(float(s.secs), 3), round(s.wer, 3), s.transcript)
            for i, s in zip(inits, scores)]


def mel_image(mel) -> np.ndarray:
    """A log-mel (n_mels, T) as an RGB image (2*n_mels, 2*T, 3), low frequencies at the bottom."""
    from matplotlib import colormaps

    m = np.asarray(mel, dtype=np.float32)[::-1]
    m = (m - m.min()) / max(float(m.max() - m.min()), 1e-6)
    rgb = (colormaps["magma"](m)[..., :3] * 255).astype(np.uint8)
    return np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)


def concat_mels(mels: Sequence) -> np.ndarray:
    """The sentences' log-mels (n_mels, T_i) joined in time -> (n_mels, sum T_i)."""
    return np.concatenate([np.asarray(m, dtype=np.float32) for m in mels], axis=1)
