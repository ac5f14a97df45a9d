"""What the Gradio app does, without Gradio: find the models, check clips, adapt, speak, score.

``app.py`` is a thin view over these functions. Models are found from ``$METATTS_CHECKPOINT``
(the pretrained base, for fine-tuning) and ``$METATTS_META_CHECKPOINT`` (the meta-learned one),
else the shipped ``checkpoints/<init>/``; they load on first use (``python app.py`` loads them
as it starts: :func:`start_warm_up`) and are shared by every user.
Everything a user gives or makes lives in their own :class:`Session`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
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
# words once numbers and symbols are spelled out: 400 characters of prose are 60-80 words
# (about 25 s of speech), 399 digits are 399 words (78 s, holding the one heavy slot 90 s)
MAX_TEXT_WORDS = 120
MAX_STEPS = 200
# Clip checks: thresholds a clip must pass to be used without a warning.
MIN_SPEECH_SECONDS = 0.5
MAX_CLIPPED = 0.001  # fraction of samples at full scale
MIN_SNR_DB = 15.0  # loud frames (95th pct) over the noise floor (10th pct), 20 ms frames
MAX_SILENCE = 0.6  # fraction of frames more than 40 dB below the loudest
# How much a clip's sound changes (spectral_change, dB) below which it holds no speech: a steady
# tone, hum, beeps or noise. Measured: steady tones and beeps 0.0, hum 0.1, white, pink, low- and
# band-passed noise 0.48-0.64 (1-10 s); the 252 clips of the evaluation speakers and test
# fixtures 3.65 or more, still 1.0 or more with white noise as loud as the speech (0.78 at -5 dB)
MIN_SPECTRAL_CHANGE_DB = 0.7
# The speaking rates the page offers (synthesis takes 0.25-4): slower than half makes long
# speech (and holds the one heavy slot) for little use; faster than twice is hard to follow
PACE_RANGE = (0.5, 2.0)
# Uploads as people make them: long ones are split (or cut short), quiet ones turned up.
MAX_UPLOAD_SECONDS = 300.0  # read at most this much of one file (with a note)
SPLIT_SECONDS = 20.0  # a clip longer than adapt.MAX_CLIP_SECONDS is cut into pieces this long
LOW_SAMPLE_RATE = 16000  # Hz; below it a clip gets a note that it lacks high frequencies
QUIET_DBFS = -40.0  # RMS level below which a clip gets a note that it was turned up
MAX_VOICE_WINDOWS = 12  # ECAPA windows per clip for the two-voice check
TWO_VOICES_COSINE = 0.5  # ECAPA centroids of a clip's two window groups less alike: two voices
# a clip whose ECAPA embedding is less alike than this to the mean of the other clips' is
# another person's (measured on the evaluation speakers, 4 clips each: a clip to its own
# speaker's other clips 0.66-0.95, to another speaker's 3 clips at most 0.49, 99 % below 0.40)
OTHER_VOICE_COSINE = 0.4
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

# Cleared by start_warm_up() until its thread has loaded the models; heavy calls wait on it, so
# that nothing is loaded twice by two threads at once.
WARMED = threading.Event()
WARMED.set()
WARM_WAIT_SECONDS = 300.0  # a heavy call waits at most this long for the warm-up
_warm_thread: threading.Thread | None = None  # the warm-up thread, once started
_warm_lock = threading.Lock()


def warm_up() -> list[str]:
    """Load, and run once on a second of quiet noise, what a person's first clip check, preview
    and adaptation need: Whisper (``ASR_MODEL``; not ``adapt.RECHECK_MODEL``, which a check
    loads only for a clip heard with low confidence), ECAPA, the vocoder and every usable
    checkpoint. Measured (README, "The app"): the first clip check 5.5-5.7 s without it,
    2.4-2.7 s with it. Returns what could not be loaded, one line each; those load, or say what
    is wrong, when a person first needs them. Sets ``WARMED`` whatever happens."""
    failed = []
    try:
        from metatts import asr, speaker
        from metatts.synthesis import synthesize
        from metatts.vocoder import load_vocoder

        noise = (np.random.default_rng(0).standard_normal(audio.SAMPLE_RATE) * 1e-3).astype(
            np.float32)

        def speak_once(init: str) -> None:
            base = load_model(init)
            synthesize(base, "Hello.", speaker=base.speakers[0])

        steps: list[tuple[str, Callable[[], object]]] = [
            (f"Whisper {ASR_MODEL}", lambda: asr.transcribe([noise], audio.SAMPLE_RATE,
                                                            model=ASR_MODEL)),
            ("ECAPA", lambda: speaker.embed(noise, audio.SAMPLE_RATE)),
            ("vocoder", load_vocoder),
        ]
        steps += [(f"the {LABELS[init]} model", functools.partial(speak_once, init))
                  for init, reason in available_inits().items() if reason is None]
        for what, step in steps:
            try:
                step()
            except Exception as err:  # reported, and met again where a person needs it
                failed.append(f"{what}: {type(err).__name__}: {err}")
    except Exception as err:  # the imports or finding the models: each call meets it again
        failed.append(f"warm-up: {type(err).__name__}: {err}")
    finally:
        release_compute_threads()
        WARMED.set()
    return failed


def start_warm_up() -> threading.Thread:
    """Run :func:`warm_up` in a daemon thread (once per process: a later call returns the same
    thread); heavy calls wait for it (``WARMED``, set when it ends, whatever happens)."""
    global _warm_thread
    with _warm_lock:
        if _warm_thread is None:
            WARMED.clear()

            def run() -> None:
                try:
                    for line in warm_up():
                        print(f"warm-up: {line}", flush=True)
                finally:
                    WARMED.set()

            _warm_thread = threading.Thread(target=run, name="metatts-warm-up", daemon=True)
            _warm_thread.start()
        return _warm_thread


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
            wavs = sorted([*folder.glob("*.wav"), *folder.glob("*.flac")])[:MAX_CLIPS]
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
    note: str = ""  # what was done to it that a person should know (split, mixed, turned up)

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


def spectral_change(wav: np.ndarray) -> float:
    """How much the sound of a clip (T,) at SAMPLE_RATE changes, in dB: the median, over its
    sounding frames (within 20 dB of the loudest), of how far the frame's spectral shape (20
    bands, its own level taken out, smoothed over 100 ms) is from the clip's median shape, on
    average over the bands. Speech changes from sound to sound; a steady tone, a hum, a beep
    or a steady noise hardly does (MIN_SPECTRAL_CHANGE_DB)."""
    mel = np.exp(audio.mel_spectrogram(wav).numpy())  # (80, T) magnitudes
    smooth = 9  # frames: 104 ms
    if mel.shape[1] < smooth:
        return float("inf")  # too short to tell; the length check speaks for it
    bands = mel.reshape(20, -1, mel.shape[1]).mean(axis=1)  # (20, T)
    bands = np.lib.stride_tricks.sliding_window_view(bands, smooth, axis=1).mean(-1)
    db = 20 * np.log10(np.maximum(bands, audio.LOG_CLAMP))
    level = 10 * np.log10(np.mean(bands**2, axis=0) + 1e-12)
    shape = db[:, level > level.max() - 20]
    shape = shape - shape.mean(axis=0)
    return float(np.median(np.abs(shape - np.median(shape, axis=1, keepdims=True)).mean(0)))


def clip_problem(seconds: float, clipped: float, snr_db: float, silence: float,
                 transcript: str, confidence: float, *, change: float | None = None,
                 voice_change: float | None = None, unlike: float | None = None) -> str | None:
    """The first reason a clip would hurt adaptation, as a sentence, or None.
    ``change``: how much its sound changes (:func:`spectral_change`); ``voice_change``: where a
    second voice seems to start (s), if one does; ``unlike``: the clip's similarity to the
    other clips, when it seems another person's (:func:`odd_clips`)."""
    if seconds < MIN_SPEECH_SECONDS:
        return f"only {seconds:.1f} s of speech; record a full sentence."
    if seconds > adapting.MAX_CLIP_SECONDS:
        return (f"{seconds:.0f} s of speech; clips must be at most "
                f"{adapting.MAX_CLIP_SECONDS:.0f} s. Cut it into sentences.")
    if change is not None and change < MIN_SPECTRAL_CHANGE_DB:
        return ("no speech in it: its sound hardly changes, as a steady tone, hum, beep or "
                "noise does. Record someone speaking, or pick another clip.")
    if clipped > MAX_CLIPPED:
        return f"{clipped:.1%} of samples are clipped (too loud); record a little quieter."
    if snr_db < MIN_SNR_DB:
        return f"noisy: about {snr_db:.0f} dB above the noise; record somewhere quieter."
    if silence > MAX_SILENCE:
        return f"{silence:.0%} silence; cut the pauses or record again."
    if voice_change is not None:
        return (f"two voices: another voice seems to speak from about {voice_change:.1f} s on. "
                "Give clips of one person only (or cut the clip there).")
    if unlike is not None:
        return (f"another voice: unlike your other clips (ECAPA {unlike:.2f} to them; one "
                "person's clips are 0.6 or more alike). Give clips of one person only, or tick "
                "it if it is the same person.")
    return adapting.transcript_problem(transcript, confidence, adapting.MIN_CONFIDENCE)


@dataclass(frozen=True)
class Session:
    """One user's clips, voices and outputs (kept in gr.State; never shared)."""

    wavs: dict[str, np.ndarray] = field(default_factory=dict)  # name -> prepared (T,) at 22.05k
    voices: dict[str, Voice] = field(default_factory=dict)  # init -> adapted voice
    seconds: dict[str, float] = field(default_factory=dict)  # init -> adaptation time
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # init -> last synthesis
    text: str = ""  # what the outputs say
    # init -> clips_key of the clips the voice was adapted from ("": loaded from a file)
    made_from: dict[str, str] = field(default_factory=dict)
    # clips were checked in this session (readable or not): a session without it and a report
    # on the page is one the app let go of (EXPIRED)
    checked: bool = False
    # clip name -> (use, transcript) the last check proposed; a report row that differs was
    # changed by the person (kept_edits)
    proposed: dict[str, tuple[bool, str]] = field(default_factory=dict)


def clips_key(wavs: dict[str, np.ndarray]) -> str:
    """Identity of a set of checked clips: their names and samples."""
    h = hashlib.sha1()
    for name in sorted(wavs):
        h.update(name.encode())
        h.update(np.ascontiguousarray(wavs[name], dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def with_clips(session: Session, wavs: dict[str, np.ndarray],
               proposed: dict[str, tuple[bool, str]] | None = None) -> tuple[Session, list[str]]:
    """``session`` with newly checked clips (and what the check ``proposed`` for each: tick and
    transcript). Voices adapted from other clips are set aside (they would otherwise be spoken,
    and scored against these clips, as if made from them); voices loaded from a file stay.
    Returns the new session and the inits set aside."""
    key = clips_key(wavs)
    keep = [i for i in session.voices if session.made_from.get(i, "") in ("", key)]
    return (Session(wavs, {i: session.voices[i] for i in keep},
                    {i: session.seconds[i] for i in keep if i in session.seconds},
                    made_from={i: session.made_from.get(i, "") for i in keep}, checked=True,
                    proposed=dict(proposed or {})),
            [i for i in session.voices if i not in keep])


@dataclass(frozen=True)
class _Piece:
    """A clip read and prepared, waiting for its transcript."""

    name: str
    wav: np.ndarray  # (T,) trimmed and loudness-normalized, at SAMPLE_RATE
    measures: tuple[float, float, float]  # see measure()
    change: float  # see spectral_change()
    given: str | None  # its transcript, if one came with it
    note: str
    extra: bool = False  # past MAX_CLIPS in all: reported, not transcribed


def check_clips(paths: Sequence[str | Path], transcripts: Sequence[str | None] | None = None,
                ) -> tuple[list[ClipReport], dict[str, np.ndarray]]:
    """Read and check up to MAX_CLIPS files. A transcript comes from ``transcripts`` (same order),
    else a ``.txt`` beside the file, else Whisper. Clips longer than MAX_CLIP_SECONDS are split
    at pauses into several. Every file given gets a report (with its reason, if it cannot be
    used); returns the reports and the readable waveforms by report name."""
    if not paths:
        raise AppError("Give at least one clip: record one, upload files, or pick an example.")
    if len(paths) > MAX_CLIPS:
        raise AppError(f"{len(paths)} clips given; use at most {MAX_CLIPS} (a few sentences of "
                       "clean speech are enough).")
    items: list[ClipReport | _Piece] = []
    taken: set[str] = set()
    for i, path in enumerate(map(Path, paths)):
        given = transcripts[i] if transcripts else None
        txt = path.with_suffix(".txt")
        if not given and txt.is_file():
            given = txt.read_text(encoding="utf-8").strip()
        for item in read_clip(path, given, taken):
            taken.add(item.name)
            items.append(item)
    usable = 0
    for n, item in enumerate(items):
        if isinstance(item, _Piece):
            usable += 1
            if usable > MAX_CLIPS:
                items[n] = dataclasses.replace(item, extra=True)
    pieces = [p for p in items if isinstance(p, _Piece)]
    heard = _transcribe([p.wav for p in pieces if not p.given and not p.extra])
    changes = voice_changes([p.wav for p in pieces])
    judged = [p for p in pieces if not p.extra]  # clips past MAX_CLIPS are not compared
    unlike = dict(zip((p.name for p in judged), odd_clips([p.wav for p in judged])))
    reports = []
    for item in items:
        if isinstance(item, ClipReport):
            reports.append(item)
            continue
        seconds = len(item.wav) / audio.SAMPLE_RATE
        clipped, snr, silence = item.measures
        if item.extra:
            text, confidence = "", 0.0
            problem = (f"left out: more than {MAX_CLIPS} clips in all, and {MAX_CLIPS} are "
                       "plenty. Tick it and write its transcript to use it anyway.")
        else:
            text, confidence = (item.given, 1.0) if item.given else next(heard)
            problem = clip_problem(seconds, clipped, snr, silence, text, confidence,
                                   change=item.change, voice_change=changes[pieces.index(item)],
                                   unlike=unlike[item.name])
        reports.append(ClipReport(item.name, round(seconds, 2), clipped, round(snr, 1),
                                  silence, text, round(confidence, 2), problem, item.note))
    return reports, {p.name: p.wav for p in pieces}


def kept_edits(rows: Sequence[tuple[bool, str, str]], proposed: dict[str, tuple[bool, str]],
               before: dict[str, np.ndarray], after: dict[str, np.ndarray]
               ) -> dict[str, tuple[bool, str]]:
    """Clip name -> (use, transcript) of the report ``rows`` where the person changed what the
    last check ``proposed``, for each clip checked again with the same name and the same audio
    (``before`` and ``after``: the waveforms by name), so that checking clips again (one more
    added) keeps what they corrected or ticked, and nothing else: the new check's own ticks
    (another voice among more clips, say) stand."""
    out = {}
    for use, name, text in rows:
        row = (bool(use), str(text))
        if name in proposed and row != proposed[name] and name in before and name in after \
                and np.array_equal(before[name], after[name]):
            out[name] = row
    return out


def clip_advice(path: str | Path) -> list[str]:
    """What the app's clip report would say of the audio of the file ``path``, as sentences: its
    notes (turned up, mixed, a low sample rate, cut short) and, for each clip it gives, why the
    app would untick it (no speech, clipped, noisy, mostly silence, too short or long), its
    transcript aside. For callers that take clips without the report (``python -m metatts
    adapt``)."""
    out = []
    for item in read_clip(Path(path), None, set()):
        if isinstance(item, ClipReport):  # unreadable: the caller meets that reason itself
            continue
        out += [item.note] if item.note else []
        problem = clip_problem(len(item.wav) / audio.SAMPLE_RATE, *item.measures,
                               transcript="(given)", confidence=1.0, change=item.change)
        out += [f"the app would leave it out: {problem}"] if problem else []
    return out


def read_clip(path: Path, given: str | None, taken: set[str]) -> list[ClipReport | _Piece]:
    """One uploaded file -> the clips it gives (several for a long one), or a report of why it
    cannot be read. Notes say what was done: mixed to mono, turned up, cut short, split."""
    name = _unique(path.name, taken)
    try:
        recording = audio.read_audio(path, max_seconds=MAX_UPLOAD_SECONDS)
        mono = audio.to_mono(recording.data)
        raw = audio.resample(audio.check_audio(mono, recording.sample_rate, name=name),
                             recording.sample_rate, audio.SAMPLE_RATE)
    except audio.AudioError as err:
        return [ClipReport(name, 0.0, 0.0, 0.0, 0.0, "", 0.0,
                           str(err).replace(str(path), "this file"))]
    notes = upload_notes(recording, mono)
    clipped = float(np.mean(np.abs(mono) >= 0.999))  # at the file's own rate
    trimmed = audio.trim_silence(raw, audio.SAMPLE_RATE)
    if len(trimmed) <= adapting.MAX_CLIP_SECONDS * audio.SAMPLE_RATE:
        _, snr, silence = measure(raw, audio.SAMPLE_RATE)
        return [_Piece(name, audio.normalize_loudness(trimmed), (clipped, snr, silence),
                       spectral_change(trimmed), given, " ".join(notes))]
    parts = audio.split_at_pauses(trimmed, audio.SAMPLE_RATE, SPLIT_SECONDS)
    stem, suffix = Path(name).stem, Path(name).suffix
    out = []
    for k, part in enumerate(parts, 1):
        _, snr, silence = measure(part, audio.SAMPLE_RATE)
        part = audio.trim_silence(part, audio.SAMPLE_RATE)
        split = (f"Part {k} of {len(parts)} of a {len(trimmed) / audio.SAMPLE_RATE:.0f} s clip, "
                 f"cut at pauses (clips are at most {adapting.MAX_CLIP_SECONDS:.0f} s).")
        out.append(_Piece(_unique(f"{stem} (part {k}){suffix}", taken),
                          audio.normalize_loudness(part), (clipped, snr, silence),
                          spectral_change(part), None, " ".join([split, *notes])))
    return out


def upload_notes(recording: audio.Recording, mono: np.ndarray) -> list[str]:
    """Sentences about what reading a file changed or what it lacks (none for a plain clip)."""
    notes = []
    if recording.truncated:
        notes.append(f"Only its first {_span(MAX_UPLOAD_SECONDS)} were read (it is "
                     f"{_span(recording.total_seconds)} long).")
    if recording.channels > 1:
        mixed = np.allclose(mono, recording.data.mean(axis=1))
        notes.append(f"Stereo: its {recording.channels} channels were mixed to one."
                     if mixed else "Stereo with channels out of phase: the louder one was used.")
    if recording.sample_rate < LOW_SAMPLE_RATE:
        notes.append(f"Recorded at {recording.sample_rate / 1000:g} kHz: nothing above "
                     f"{recording.sample_rate / 2000:g} kHz is in it, so the voice may come out "
                     "muffled.")
    level = 20 * np.log10(float(np.sqrt(np.mean(np.square(mono, dtype=np.float64)))) + 1e-12)
    if level < QUIET_DBFS:
        notes.append(f"Very quiet ({level:.0f} dBFS): it was turned up, and any noise with it.")
    return notes


def _span(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def voice_changes(wavs: Sequence[np.ndarray]) -> list[float | None]:
    """For each clip (T,) at SAMPLE_RATE: where a second voice seems to start (s), or None.

    ECAPA embeddings of 1.5 s windows (hop 0.75 s, or longer to make at most MAX_VOICE_WINDOWS
    of a long clip) are split into two groups (2-means on the
    cosine, started from the two least alike windows); a clip has two voices when the groups'
    centroids are less alike than TWO_VOICES_COSINE, the smaller group holds at least two
    windows and the clip changes group exactly once (one voice, then the other). Clips shorter
    than four windows (3.75 s) are not judged. On the shipped evaluation speakers, two clips
    joined (4-8 windows): one speaker's gave a centroid cosine of 0.51-0.85, two speakers' -0.01
    to 0.47 (42 pairs), every one of those with a single change; a whispering Kokoro voice
    (kokoro_en_af_nicole) gave 0.31-0.38 within single clips, but changing group twice."""
    from metatts import speaker

    window = int(1.5 * speaker.SAMPLE_RATE)
    spans, chunks, hops = [], [], []
    for wav in wavs:
        w = audio.resample(wav, audio.SAMPLE_RATE, speaker.SAMPLE_RATE)
        hop = max(window // 2, (len(w) - window) // (MAX_VOICE_WINDOWS - 1))
        hops.append(hop)
        starts = list(range(0, len(w) - window + 1, hop))
        spans.append((len(chunks), len(starts) if len(starts) >= 4 else 0))
        if len(starts) >= 4:
            chunks += [w[s : s + window] for s in starts]
    if not chunks:
        return [None] * len(wavs)
    emb = speaker.embed(chunks, speaker.SAMPLE_RATE).numpy()  # (windows, 192), unit norm
    out: list[float | None] = []
    for (first, count), hop in zip(spans, hops):
        labels, cosine = _two_groups(emb[first : first + count]) if count else (None, 1.0)
        if (labels is None or cosine >= TWO_VOICES_COSINE or min(np.bincount(labels)) < 2
                or np.count_nonzero(np.diff(labels)) != 1):  # one change, not taking turns
            out.append(None)
            continue
        # the change: the first window of the group the clip does not start with
        out.append(round(float(np.argmax(labels != labels[0])) * hop / speaker.SAMPLE_RATE, 1))
    return out


_EMBEDDINGS: dict[str, object] = {}  # sha1 of a clip's samples -> its ECAPA embedding (192,)
_EMBEDDINGS_KEPT = 64  # clips whose embeddings are kept (the oldest go first)
_embeddings_lock = threading.Lock()


def clip_embeddings(wavs: Sequence[np.ndarray]):
    """ECAPA embeddings (N, 192), unit norm, of clips (T,) at SAMPLE_RATE, each clip's embedded
    once while it is among the last _EMBEDDINGS_KEPT: the clip check (:func:`odd_clips`) and the
    preview that follows it compare with the same clips. (:func:`metatts.speaker.embed` embeds
    clips one at a time, so a clip's embedding does not depend on the others.)"""
    import torch

    from metatts import speaker

    keys = [hashlib.sha1(np.ascontiguousarray(w, dtype=np.float32).tobytes()).hexdigest()
            for w in wavs]
    with _embeddings_lock:
        have = {k: _EMBEDDINGS[k] for k in keys if k in _EMBEDDINGS}
    missing = {k: w for k, w in zip(keys, wavs) if k not in have}
    if missing:
        have |= dict(zip(missing, speaker.embed(list(missing.values()), audio.SAMPLE_RATE)))
    with _embeddings_lock:
        _EMBEDDINGS.update(have)
        for old in list(_EMBEDDINGS)[:-_EMBEDDINGS_KEPT]:
            del _EMBEDDINGS[old]
    return torch.stack([have[k] for k in keys])


def odd_clips(wavs: Sequence[np.ndarray]) -> list[float | None]:
    """For each clip (T,) at SAMPLE_RATE: its ECAPA similarity to the other clips (the cosine
    with the mean of their embeddings) where that is below OTHER_VOICE_COSINE, i.e. the clip
    seems another person's; else None. Of two clips that are unlike, the second is the one
    named (nothing says which is the person's)."""
    if len(wavs) < 2:
        return [None] * len(wavs)
    emb = clip_embeddings(wavs).numpy()  # (clips, 192), unit norm
    out: list[float | None] = []
    for i in range(len(emb)):
        others = np.delete(emb, i, axis=0).mean(0)
        cosine = float(emb[i] @ others / (np.linalg.norm(others) + 1e-9))
        out.append(round(cosine, 2) if cosine < OTHER_VOICE_COSINE and (len(emb) > 2 or i == 1)
                   else None)
    return out


def _two_groups(emb: np.ndarray) -> tuple[np.ndarray | None, float]:
    """2-means on unit vectors (N, D): (labels (N,), cosine of the two centroids)."""
    sims = emb @ emb.T
    i, j = np.unravel_index(np.argmin(sims), sims.shape)
    centroids = emb[[i, j]]
    for _ in range(10):
        labels = np.argmax(emb @ centroids.T, axis=1)
        if labels.min() == labels.max():
            return None, 1.0
        centroids = np.stack([emb[labels == k].mean(0) for k in (0, 1)])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    return labels, float(centroids[0] @ centroids[1])


def _unique(name: str, taken: set[str] | dict) -> str:
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


# what a page whose session was dropped (SESSION_SECONDS idle, or SESSIONS others since) is told
EXPIRED = ("This page's clips and voices are no longer held: the app lets them go after an hour "
           "without use, or when many people have used it since. Press 'Check clips' (step 1) "
           "again; a voice you downloaded can be used again under 'Use a voice file instead'.")


def chosen_clips(session: Session, rows: Sequence[tuple[bool, str, str]]) -> list[adapting.Clip]:
    """The clips a user kept: rows of (use, name, transcript) from the report table."""
    if not session.wavs and not rows:
        raise AppError("There are no checked clips yet: give clips and press 'Check clips' "
                       "(step 1) first.")
    if not (session.wavs or session.checked):
        raise AppError(EXPIRED)
    clips = []
    for use, name, text in rows:
        if not use:
            continue
        if name not in session.wavs:
            raise AppError(f"{name}: this clip could not be read, or its name was changed in the "
                           "report; untick it, give another clip, or keep the name it was "
                           "given.")
        if not str(text).strip():
            raise AppError(f"{name}: its transcript is empty; write what is said in it.")
        clips.append(adapting.Clip(name, session.wavs[name], str(text).strip()))
    if not clips:
        raise AppError("No clip is selected. Tick at least one clip in the report, or give "
                       "better clips.")
    return clips


# --- threads --------------------------------------------------------------------------------

@functools.cache
def _openmp():
    """PyTorch's own OpenMP runtime (through ctypes), or None where it has none we can reach."""
    import ctypes
    import glob

    import torch

    for path in sorted(glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "lib*omp*"))):
        try:
            lib = ctypes.CDLL(path)  # the copy torch has loaded: the same runtime
        except OSError:
            continue
        if hasattr(lib, "omp_pause_resource_all"):
            return lib
    return None


MALLOC_ARENAS = 2  # glibc heaps the app's threads share (glibc's default: 8 per core)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Have glibc's malloc share ``arenas`` heaps between all threads (``mallopt(M_ARENA_MAX)``;
    returns whether it took), unless $MALLOC_ARENA_MAX already says how many. Gradio runs each
    request on a worker thread, and with a heap per thread freed memory stays spread over many
    heaps: 24 people (3 rounds of 8 at once, 3 clips x 50 steps each) left the server at 2.5,
    3.4 and 3.6 GB after each round (peak 3.7 GB), and with 2 heaps at 2.0, 2.4 and 2.5 GB
    (peak 2.7 GB), at the same speed (README, "The app"). Call it before the threads start;
    where there is no glibc it does nothing."""
    import ctypes

    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        return ctypes.CDLL("libc.so.6").mallopt(-8, arenas) == 1  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def release_compute_threads() -> bool:
    """Let go of the calling thread's idle OpenMP workers (its next parallel operation makes them
    again); returns whether they were let go. Call it when a thread has finished its heavy work:
    while another thread keeps its workers, a fresh thread's steps run about 1.6x slower
    (measured: 20 adaptation steps 3.56 s in a fresh thread against 2.24 s in the main thread,
    and 2.23-2.56 s once the main thread's workers were let go). Never call it from inside a
    parallel region (the app calls it between calls into PyTorch)."""
    lib = _openmp()
    return lib is not None and lib.omp_pause_resource_all(1) == 0  # 1: omp_pause_soft


# --- adaptation -----------------------------------------------------------------------------

def settings_for(init: str, base: Checkpoint, steps: int | None, lr: float | None
                 ) -> adapting.AdaptSettings:
    """The default settings of ``init`` with the user's steps and learning rate."""
    settings = adapting.default_settings(init, base)
    changes = {}
    if steps:
        number = _number(steps)
        if not 1 <= number <= MAX_STEPS or number != int(number):
            raise AppError(f"Steps must be a whole number between 1 and {MAX_STEPS}, not "
                           f"{_shown(steps)}.")
        changes["steps"] = int(number)
    if lr:
        if not 0 < _number(lr) <= 1:
            raise AppError(f"The learning rate must be above 0 and at most 1, not "
                           f"{_shown(lr)}.")
        changes["lr"] = _number(lr)
    return adapting.with_changes(settings, **changes)


def _number(value) -> float:
    """``value`` as a finite number ("20" too: an API client may send text); NaN where it is
    none (text such as "abc", infinity), which every range check refuses."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return number if np.isfinite(number) and not isinstance(value, bool) else float("nan")


def _shown(value) -> str:
    """A value as a message quotes it: text in quotes, a number as it is."""
    return repr(value) if isinstance(value, str) else str(value)


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


class _Stopped(Exception):
    """Raised in an adaptation's thread at its next step once nobody waits for its steps."""


def _run(init: str, work: Callable[[Callable], adapting.Adaptation]) -> Iterator[Step | Done]:
    """Run ``work`` in a thread and yield its steps as they come (so a UI can redraw). When this
    generator is closed before the end (the person cancelled, or left: Gradio drops the event),
    the work stops at its next step instead of stepping on, unseen, beside the next heavy job."""
    events: queue.Queue = queue.Queue()
    stop = threading.Event()

    def on_step(p) -> None:
        if stop.is_set():
            raise _Stopped
        events.put(Step(init, p.step, p.steps, p.loss))

    def target() -> None:
        try:
            events.put(Done(init, work(on_step)))
        except _Stopped:
            pass
        except Exception as err:  # noqa: BLE001 (raised again in the caller's thread)
            events.put(err)

    threading.Thread(target=target, daemon=True).start()
    try:
        while True:
            event = events.get()
            if isinstance(event, adapting.AdaptError):
                raise AppError(str(event)) from None
            if isinstance(event, Exception):
                raise event
            yield event
            if isinstance(event, Done):
                return
    finally:
        stop.set()


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


# --- the voice before adapting -----------------------------------------------------------

PREVIEW_TEXT = "Hello! This is how I sound before any adapting."


@dataclass(frozen=True)
class StartVoice:
    """Where a new voice starts before any adaptation step."""

    init: str  # the checkpoint it speaks with ("meta" or "pretrained")
    params: dict  # parameter name -> value (torch tensors), as an adapted voice's
    source: str  # how it was found, for the page


def start_voice(wavs: Sequence[np.ndarray]) -> StartVoice:
    """The voice for clips (T,) at SAMPLE_RATE before adapting: the preview speaks with it and
    "Adapt" refines it. It is the meta-learned start (the fine-tuning start where no
    meta-learned model is installed); a start meta-learned through the speaker encoder
    (``meta.start: "encoder"``) is computed from these clips' mels, so the preview already
    speaks in an estimate of their voice; other starts are the same for every set of clips."""
    init = "meta" if model_status("meta") is None else "pretrained"
    base = load_model(init)
    try:
        settings = adapting.default_settings(init, base)
        kind = adapting.resolved_start(base, settings)
        mels = [audio.mel_spectrogram(np.asarray(w, np.float32)) for w in wavs] \
            if kind == "encoder" else []
        params = adapting.start_params(base, settings, mels=mels)
    except adapting.AdaptError as err:
        raise AppError(str(err)) from None
    how = ("computed from your clips by the speaker encoder" if kind == "encoder" else
           "the same for every voice")
    return StartVoice(init, params, f"the {LABELS[init]} start ({how}), before any adaptation "
                                    "step")


@dataclass(frozen=True)
class Preview:
    init: str
    wav: np.ndarray  # (T,) float32 at sample_rate
    sample_rate: int
    similarity: float  # mean ECAPA cosine to the clips (as in eval.score)
    text: str
    source: str  # StartVoice.source
    frames: int = 0  # frames of the clips that corrected the speech (metatts.frames); 0: none


def preview(wavs: Sequence[np.ndarray], text: str = PREVIEW_TEXT,
            clips: Sequence[adapting.Clip] = ()) -> Preview:
    """Speak ``text`` with :func:`start_voice` of the clips, and score it against them. With
    ``clips`` (the same clips with their transcripts) each frame is corrected by the clips' own
    (:mod:`metatts.frames`), as an adapted voice of them speaks."""
    from metatts import speaker
    from metatts.frames import DEFAULT_KEY, frame_bank

    if not wavs:
        raise AppError("Check some clips first: the preview speaks in the voice they start.")
    start = start_voice(wavs)
    bank = None
    if clips:
        base = load_model(start.init)
        try:
            bank = frame_bank(base, start.params, adapting.support_examples(clips, base),
                              key=DEFAULT_KEY)
        except adapting.AdaptError as err:
            raise AppError(str(err)) from None
    out = speak_params(start.init, start.params, text, frames=bank)
    refs = clip_embeddings(wavs)
    own = speaker.embed(out.wav, out.sample_rate)
    similarity = float(speaker.similarity(own, refs).mean())
    return Preview(start.init, out.wav, out.sample_rate, round(similarity, 3), text,
                   start.source, 0 if bank is None else bank.frames)


# --- synthesis and scores -------------------------------------------------------------------

def check_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise AppError("Type some text to speak.")
    if len(text) > MAX_TEXT_CHARS:
        raise AppError(f"The text is {len(text)} characters long; the limit here is "
                       f"{MAX_TEXT_CHARS}. Shorten it, or use `python -m metatts synthesize` "
                       "for long text.")
    from metatts.text import normalize_text

    words = len(normalize_text(text).split())
    if words > MAX_TEXT_WORDS:
        raise AppError(f"Spelled out, the text is {words} words long (numbers are read digit by "
                       f"digit or in words); the limit here is {MAX_TEXT_WORDS}. Shorten it, or "
                       "use `python -m metatts synthesize` for long text.")
    return text


def speak(init: str, voice: Voice, text: str):
    """Synthesize ``text`` with an adapted voice -> :class:`metatts.synthesis.Synthesis`."""
    return speak_params(init, voice.params, text, frames=voice.frames)


def check_pace(pace) -> float:
    """The speaking rate the page asks for, as a number in :data:`PACE_RANGE` (1: the voice's
    own; text from an API client too), or :class:`AppError` saying what it takes."""
    number = _number(1.0 if pace is None else pace)
    if not PACE_RANGE[0] <= number <= PACE_RANGE[1]:
        raise AppError(f"The speaking rate must be between {PACE_RANGE[0]:g} and "
                       f"{PACE_RANGE[1]:g} (1 is the voice's own, 2 twice as fast), not "
                       f"{_shown(pace)}.")
    return number


def speak_stream(init: str, voice: Voice, text: str, pace: float = 1.0) -> Iterator:
    """``text`` in an adapted voice a sentence at a time, at speaking rate ``pace``: one
    :class:`metatts.synthesis.Synthesis` per sentence, each made when asked for. Bad text, a
    rate out of range or a voice that does not fit raises :class:`AppError` here, before any
    audio is made."""
    from metatts.synthesis import synthesize_stream
    from metatts.text import TextError

    pace = check_pace(pace)
    try:
        return synthesize_stream(load_model(init), check_text(text), params=voice.params,
                                 pace=pace, frames=voice.frames)
    except (TextError, CheckpointError) as err:
        raise AppError(str(err)) from None


def speak_params(init: str, params: dict, text: str, frames=None):
    """Synthesize ``text`` with parameters over ``init``'s model (and the voice's frame bank,
    :mod:`metatts.frames`, when given) -> ``Synthesis``."""
    from metatts.synthesis import synthesize
    from metatts.text import TextError

    try:
        return synthesize(load_model(init), check_text(text), params=params, frames=frames)
    except (TextError, CheckpointError) as err:
        raise AppError(str(err)) from None


@dataclass(frozen=True)
class Score:
    init: str
    similarity: float | None  # mean ECAPA cosine of the output to the given clips (None: none)
    wer: float  # Whisper's transcript of the output against the text
    transcript: str


def score_outputs(session: Session) -> list[Score]:
    """Speaker similarity to the user's clips and Whisper WER of each output in the session."""
    if not session.outputs:
        raise AppError("Synthesize something first; then it can be scored.")
    from eval.score import (
        score_clips,  # the project's one scoring path (Whisper + ECAPA)
    )

    inits = list(session.outputs)
    # without clips (a voice loaded from a file) only WER: there is nothing to compare with
    scores = score_clips([session.outputs[i] for i in inits], audio.SAMPLE_RATE,
                         [session.text] * len(inits), list(session.wavs.values()) or None,
                         asr_model=ASR_MODEL)
    return [Score(i, None if s.secs is None else round(float(s.secs), 3), round(s.wer, 3),
                  s.transcript) for i, s in zip(inits, scores)]


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
