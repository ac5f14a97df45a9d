"""Build the corpus: plan every clip from the seed, render the missing ones in parallel, and write
the manifest.

Layout: ``ROOT/<speaker>/<utt>.wav`` (22,050 Hz mono 16-bit, silence-trimmed, loudness-normalized)
with ``<utt>.txt`` (the transcript) beside it, and ``ROOT/manifest.jsonl``. Each file is written
atomically and the wav last, so a clip whose wav exists is complete: an interrupted build picks up
where it stopped, and a finished one rebuilds nothing.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from metatts.assets import atomic_path
from metatts.audio import (
    SAMPLE_RATE,
    AudioError,
    load_audio,
    normalize_loudness,
    save_audio,
    trim_silence,
)
from metatts.corpus.engines import EngineError, Voice, render, unavailable
from metatts.corpus.manifest import Clip, read_manifest, write_manifest
from metatts.corpus.sentences import sentences
from metatts.corpus.shift import Shift, apply_shift
from metatts.corpus.store import pack, unpack
from metatts.corpus.voices import VIRTUAL_SPEAKERS, catalogue, is_drawn, split_of

DEFAULT_HOURS = 1.5  # of the engine voices; the natural voices have fixed counts (NATURAL_CLIPS)
MEAN_CLIP_SECONDS = 2.6  # measured over all engines on this grammar; turns hours into clip counts
# Clips per natural speaker by role: test and validation voices, training base voices, blends.
NATURAL_CLIPS = {"test": 30, "val": 30, "train": 80, "virtual": 16}
LONG_SHARE = 0.35  # of a natural speaker's sentences are long read-aloud ones (5-15 s)
MANIFEST_EVERY = 8  # batches: the manifest is rewritten as the build goes, so a partial corpus reads
BATCH = 16  # clips per engine call: Kokoro and Piper load their model once per call
# Relative cost of a clip, to start the slow engines first and keep both cores busy to the end.
_COST = {"kokoro": 100, "piper": 20, "festival": 5}
# Kokoro costs about 3-6 CPU-seconds per second of audio (all other engines together less than a
# tenth of that), so its speakers get a quarter of the clips: ~40 each at the default 3 hours.
SHARE = {"kokoro": 0.25}


@dataclass(frozen=True)
class BuildConfig:
    hours: float = DEFAULT_HOURS  # target total audio; ignored when clips_per_speaker is set
    seed: int = 0
    jobs: int = 2  # engine calls run at once
    clips_per_speaker: int | None = None  # of the engine voices; overrides hours
    virtual_speakers: int = VIRTUAL_SPEAKERS
    natural_scale: float = 1.0  # multiplies NATURAL_CLIPS (a small test corpus: 0.1)
    span_speakers: int = 0  # voices drawn from the packs' span (voices.span_voices)


@dataclass(frozen=True)
class BuildResult:
    clips: list[Clip]  # everything in the manifest, with durations
    written: int  # clips rendered by this run (0 when the corpus was already complete)
    skipped: list[str]  # one message per voice whose engine is not installed
    failures: list[str]  # one message per failed clip or engine call; those clips are missing


def _share(voices: Sequence[Voice]) -> float:
    """The fraction of the standard clip count a speaker with these voices gets."""
    return min(SHARE.get(voice.engine, 1.0) for voice in voices)


def _by_speaker(voices: Sequence[Voice]) -> dict[str, list[Voice]]:
    out: dict[str, list[Voice]] = {}
    for voice in voices:
        out.setdefault(voice.speaker, []).append(voice)
    return out


def natural_role(voice: Voice) -> str:
    """"test", "val", "train" (a base voice) or "virtual" (a blend or span voice) for a natural
    voice."""
    split = split_of(voice.speaker)
    return "virtual" if split == "train" and is_drawn(voice.engine, voice.voice_id) else split


def clips_per_speaker(hours: float, voices: Sequence[Voice]) -> int:
    """The standard clip count per engine speaker that gives about ``hours`` of audio from the
    engine voices among ``voices`` (natural voices have fixed counts)."""
    engine = [v for v in voices if v.group != "natural"]
    shares = sum(_share(own) for own in _by_speaker(engine).values())
    if hours > 0 and shares == 0:
        return 1
    if hours <= 0 or shares == 0:
        raise ValueError(f"need hours > 0 and at least one voice, got {hours} h, {len(voices)}")
    return max(1, math.ceil(hours * 3600 / (MEAN_CLIP_SECONDS * shares)))


def plan(voices: Sequence[Voice], per_speaker: int, seed: int,
         natural_scale: float = 1.0) -> list[tuple[Clip, Voice]]:
    """Every clip of the corpus with the voice that speaks it; a pure function of its inputs.

    Each speaker reads its own seeded sentences, taking turns between its voices (engines): an
    engine speaker ``per_speaker`` of them times its engine's SHARE, a natural speaker
    NATURAL_CLIPS[its role] times ``natural_scale``, half of them long.
    """
    out = []
    for speaker, own in _by_speaker(voices).items():
        natural = own[0].group == "natural"
        if natural:
            count = max(1, round(NATURAL_CLIPS[natural_role(own[0])] * natural_scale))
            said = sentences(f"{seed}:{speaker}", count, long_share=LONG_SHARE)
        else:
            count = max(1, round(per_speaker * _share(own)))
            said = sentences(f"{seed}:{speaker}", count)
        for i, sentence in enumerate(said):
            voice = own[i % len(own)]
            utt = f"{speaker}_{i:04d}"
            out.append((Clip(id=utt, speaker=speaker, engine=voice.engine, voice=voice.voice_id,
                             licence=voice.licence, split=split_of(speaker), kind=sentence.kind,
                             text=sentence.text, audio=f"{speaker}/{utt}.wav", group=voice.group,
                             speed=voice.speed, formant=voice.formant, pitch=voice.pitch), voice))
    return out


def _finish_clip(raw: Path, clip: Clip, root: Path) -> None:
    """Resample, trim and normalize one rendered clip; write its transcript, then its wav."""
    wav = load_audio(raw, SAMPLE_RATE)
    shift = Shift(clip.formant, clip.pitch)
    if not shift.identity:
        wav = apply_shift(wav, SAMPLE_RATE, shift)
    wav = normalize_loudness(trim_silence(wav, SAMPLE_RATE))
    target = root / clip.audio
    target.unlink(missing_ok=True)  # a wav left by another plan must not pair with the new text
    with atomic_path(target.with_suffix(".txt")) as tmp:
        tmp.write_text(clip.text + "\n", encoding="utf-8")
    save_audio(target, wav, SAMPLE_RATE)  # atomic


def _run_batch(voice: Voice, batch: list[Clip], root: Path) -> list[str]:
    """Render and finish a batch of one voice's clips; returns a message per clip that failed."""
    scratch = root / ".scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{batch[0].id}.", dir=scratch))
    failures = []
    try:
        raws = [tmp / f"{clip.id}.wav" for clip in batch]
        render(voice, [clip.text for clip in batch], raws)
        for raw, clip in zip(raws, batch, strict=True):
            try:
                _finish_clip(raw, clip, root)
            except AudioError as err:  # e.g. an engine that spoke nothing for this text
                failures.append(f"{clip.id} ({voice.engine} {voice.voice_id}): {err}")
    except EngineError as err:
        failures.append(f"{batch[0].id}..{batch[-1].id} ({voice.engine} {voice.voice_id}): {err}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return failures


_ORDER = {"test": 0, "val": 1, "engine": 2, "train": 3, "virtual": 4}


def _priority(voice: Voice) -> int:
    """Render order: the natural test and validation voices first (the benchmark needs them),
    then the cheap engine voices, the natural training voices, and the blends last, one whole
    speaker after another, so that an unfinished build is already a usable corpus."""
    return _ORDER["engine" if voice.group != "natural" else natural_role(voice)]


def _batches(todo: list[tuple[Clip, Voice]]) -> list[tuple[Voice, list[Clip]]]:
    by_voice: dict[Voice, list[Clip]] = {}
    for clip, voice in todo:
        by_voice.setdefault(voice, []).append(clip)
    out = [(voice, clips[i:i + BATCH]) for voice, clips in by_voice.items()
           for i in range(0, len(clips), BATCH)]
    return sorted(out, key=lambda vb: (_priority(vb[0]), -_COST.get(vb[0].engine, 1) * len(vb[1])))


def build(
    root: str | Path,
    config: BuildConfig = BuildConfig(),
    voices: Sequence[Voice] | None = None,
    on_progress: Callable[[int], None] | None = None,
    store: str | Path | None = None,
) -> BuildResult:
    """Build (or finish) the corpus in ``root`` from ``voices`` (default: the whole catalogue).

    Voices whose engine is missing are skipped with a message naming the package to install;
    clips that fail are reported and left out of the manifest (a rerun tries them again).
    ``on_progress(n)`` is called as n more of the ``len(planned(config, voices)[0])`` clips are
    done, for a progress bar.

    With a ``store`` (metatts.corpus.store), the clips stored there are first written back into
    ``root``, and each slow engine's speaker is packed into it as soon as all its clips are done
    (and every unfinished one at the end), so the next build, anywhere, starts from there.
    """
    root = Path(root)
    todo_plan, skipped = planned(config, voices)
    if store is not None:
        planned_speakers = {clip.speaker for clip, _ in todo_plan}
        unpack(store, root, planned_speakers)
    recorded = _recorded_recipes(root)
    todo = [(clip, voice) for clip, voice in todo_plan
            if not is_done(root, clip) or recorded.get(clip.id, _recipe(clip)) != _recipe(clip)]
    if on_progress is not None and len(todo_plan) > len(todo):
        on_progress(len(todo_plan) - len(todo))
    failures: list[str] = []
    seconds: dict[str, float] = {}  # clip id -> duration, read once per clip
    by_speaker: dict[str, list[Clip]] = {}
    for clip, _ in todo_plan:
        by_speaker.setdefault(clip.speaker, []).append(clip)
    with ThreadPoolExecutor(max_workers=max(1, config.jobs)) as pool:
        futures = {pool.submit(_run_batch, voice, batch, root): batch
                   for voice, batch in _batches(todo)}
        for n, future in enumerate(as_completed(futures), start=1):
            failures += future.result()
            if on_progress is not None:
                on_progress(len(futures[future]))
            if n % MANIFEST_EVERY == 0:
                _write_done(root, todo_plan, seconds)
            own = by_speaker[futures[future][0].speaker]
            if store is not None and all(is_done(root, clip) for clip in own):
                pack(root, store, own)
    shutil.rmtree(root / ".scratch", ignore_errors=True)
    clips = _write_done(root, todo_plan, seconds)
    if store is not None:
        pack(root, store, clips)
    return BuildResult(clips=clips, written=len(todo) - _missing(root, todo), skipped=skipped,
                       failures=failures)


def _recipe(clip: Clip) -> tuple:
    return (clip.engine, clip.voice, clip.speed, clip.formant, clip.pitch)


def _recorded_recipes(root: Path) -> dict[str, tuple]:
    """Clip id -> the voice recipe the existing manifest says it was made with: a clip whose
    recipe has changed since (another blend, speed or shift) is made again."""
    if not (root / "manifest.jsonl").is_file():
        return {}
    try:
        return {clip.id: _recipe(clip) for clip in read_manifest(root)}
    except ValueError:  # an unreadable manifest is rewritten at the end
        return {}


def _write_done(root: Path, todo_plan: list[tuple[Clip, Voice]], seconds: dict[str, float]
                ) -> list[Clip]:
    """Write the manifest of every finished clip of the plan; returns those clips."""
    clips = []
    for clip, _ in todo_plan:
        if is_done(root, clip):
            if clip.id not in seconds:
                seconds[clip.id] = round(sf.info(str(root / clip.audio)).duration, 3)
            clips.append(dataclasses.replace(clip, seconds=seconds[clip.id]))
    write_manifest(root, clips)
    return clips


def planned(config: BuildConfig, voices: Sequence[Voice] | None = None
            ) -> tuple[list[tuple[Clip, Voice]], list[str]]:
    """(the clips a build with ``config`` makes from the installed ``voices``, skip messages)."""
    voices = (catalogue(config.virtual_speakers, config.seed, config.span_speakers)
              if voices is None else voices)
    skipped = [why for why in map(unavailable, voices) if why is not None]
    usable = [voice for voice in voices if unavailable(voice) is None]
    if not usable:
        return [], skipped
    per_speaker = config.clips_per_speaker or clips_per_speaker(config.hours, usable)
    return plan(usable, per_speaker, config.seed, config.natural_scale), skipped


def is_done(root: Path, clip: Clip) -> bool:
    """A clip is done when its wav exists and its transcript is the planned text (a build with
    another seed or grammar in the same folder re-renders what changed)."""
    txt = (root / clip.audio).with_suffix(".txt")
    return (root / clip.audio).is_file() and txt.is_file() and txt.read_text(
        encoding="utf-8").strip() == clip.text


def _missing(root: Path, clips: list[tuple[Clip, Voice]]) -> int:
    return sum(not is_done(root, clip) for clip, _ in clips)
