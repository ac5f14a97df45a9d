"""Run the grid's units: adapt, synthesize the test sentences, score, append to results.jsonl.

Units of one method and task that differ only in their step count share one adaptation to the
largest count, which keeps the parameters at every smaller count (``adapt(..., keep=...)``):
the same parameters as separate adaptations, for the price of the longest one. Their clips are
then synthesized and judged as one batch (each judge loaded once per process).

A clip is identified by its *voice* (a hash of the checkpoint and the adapted parameters), its
speaker and its text: one already measured, in this run or recorded in results.jsonl, is reused,
not synthesized again. Every step-0 unit of one checkpoint and speaker has the same voice (the
start does not depend on the support clips), so it is synthesized once, not once per method,
k and draw; an encoder start (the encoder's estimate of the support clips) is one voice per
draw.

Each adaptation's records are appended (and flushed) as soon as its batch is scored, so an
interrupted run loses at most the adaptation in progress; a rerun skips every unit whose records
are all present. A unit that fails on bad data (unreadable audio, a transcript that does not
fit, a diverged loss) is reported in ``problems`` and skipped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from eval import metrics
from eval.score import mean_cosine
from eval.grid import FINETUNE, FINETUNE_START, Method, Task, Unit, option_values
from eval.scorer import Measured, Scorer
from metatts import audio
from metatts.adapt import (AdaptError, AdaptSettings, Clip, Kept, adapt, default_settings,
                           with_changes)
from metatts.data.utterance import Utterance
from metatts.model.checkpoint import Checkpoint, CheckpointError
from metatts.frames import FrameBank
from metatts.synthesis import synthesize
from metatts.text import TextError
from metatts.voice import base_model

if TYPE_CHECKING:
    from eval.references import Bank

RESULTS = "results.jsonl"
BAD_DATA = (audio.AudioError, AdaptError, TextError, CheckpointError)
Vocoder = Callable[[torch.Tensor], torch.Tensor]  # (80, T) log-mel -> (T * 256,) wav
# what a clip's record takes from its measurement (the rest describes the unit)
CLIP_FIELDS = ("transcript", "wer", "errors", "words", "secs", "secs_ge2e", "secs_other",
               "secs_ge2e_other", "mos",
               "audio_seconds", "synthesis_seconds", "score_seconds", "synthesis_cpu_seconds",
               "score_cpu_seconds", "vocoder")


def unit_key(method: str, speaker: str, shots: int, seed: int, steps: int) -> tuple:
    return (method, speaker, shots, seed, steps)


def record_key(r: dict) -> tuple:
    return unit_key(r["method"], r["speaker"], r["shots"], r["seed"], r["steps"])


class StaleResultsError(ValueError):
    """results.jsonl holds records of a unit made with other settings or another checkpoint."""


# settings added after setup ids were first recorded, with the value every earlier record was
# made with: at that value they stay out of the id, so those records keep matching
LATER_SETTINGS = {"precision": "float32", "identity": 0.0, "frames": False, "frames_key": "mel",
                  "verifier": 0.0, "verifier_every": 1, "frames_neighbours": 4,
                  "frames_upper": 0}


def setup_id(method: Method, base: Checkpoint, seed: int) -> str:
    """What a unit's voice depends on besides its clips and step count: the method's adaptation
    settings (the shipped defaults included) and the checkpoint's sha256. Recorded with every
    result, so that a resumed run never mixes records of an earlier setup into its tables."""
    settings = settings_for(method, base, 0, seed).to_dict()
    settings.pop("steps")
    for name, before in LATER_SETTINGS.items():  # as every record before the field existed
        if settings.get(name) == before:
            settings.pop(name)
    doc = json.dumps({"settings": settings, "base": base_model(base).sha256}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


class ResultsError(ValueError):
    """A line of a results file is not a record (nor one cut off by an interrupted write)."""


# what every record of results.jsonl names: its unit and its test sentence (every reader keys
# records on them)
RECORD_FIELDS = ("method", "speaker", "shots", "seed", "steps", "text")


def read_results(path: Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Records of a JSONL results file. A record cut off by an interruption (a line that opens
    an object and ends early; a resumed run writes on after it) is skipped; any other line that
    is not a JSON object, or a record without one of the ``required`` fields (RECORD_FIELDS for
    results.jsonl), raises :class:`ResultsError` with the file and line."""
    if not path.is_file():
        return []
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if line.lstrip().startswith("{"):
                continue  # cut off
            record = None
        if not isinstance(record, dict):
            raise ResultsError(f"{path}:{number}: not a record of this benchmark ({line[:60]!r}); "
                               "remove that line or fix it, or give another folder.")
        missing = [name for name in required if name not in record]
        if missing:
            raise ResultsError(f"{path}:{number}: a record without {', '.join(map(repr, missing))}"
                               f" (every record names its {', '.join(required)}); remove that "
                               "line or fix it, or give another folder.")
        out.append(record)
    return out


def drawn_key(r: dict) -> tuple:
    """A record's unit key and the support clips it was adapted from: a run with other draw
    settings (more test sentences) can give a unit of the same key other support clips."""
    return (record_key(r), tuple(r.get("support", ())))


def unit_drawn_key(u: Unit) -> tuple:
    return (unit_key(u.method.name, u.task.speaker, u.shots, u.task.seed, u.steps),
            tuple(x.id for x in u.task.support))


def recorded_texts(records: list[dict]) -> dict[tuple, set[str]]:
    """(unit key, support ids) -> the test sentences recorded of it."""
    texts: dict[tuple, set[str]] = {}
    for r in records:
        texts.setdefault(drawn_key(r), set()).add(r["text"])
    return texts


def settings_for(method: Method, base: Checkpoint, steps: int, seed: int) -> AdaptSettings:
    """The method's adaptation settings with the grid's step budget and the task's seed: the
    meta-trained inner loop for meta methods, Adam or SGD on the pretrained model otherwise;
    then the method's overrides."""
    settings = default_settings(method.init, base)
    if method.base in FINETUNE:
        settings = with_changes(default_settings(method.init, base, FINETUNE_START[method.base]),
                                optimizer=FINETUNE[method.base])
    changes = option_values(method.overrides)
    return with_changes(settings, steps=steps, seed=seed, **changes)


@dataclass
class Loader:
    """Real clips, read and prepared once: (T,) float32 at audio.SAMPLE_RATE."""

    cache: dict[str, np.ndarray] = field(default_factory=dict)

    def wav(self, u: Utterance) -> np.ndarray:
        if u.id not in self.cache:
            self.cache[u.id] = audio.prepare_clip(u.audio)
        return self.cache[u.id]

    def clips(self, utterances: Iterable[Utterance]) -> list[Clip]:
        return [Clip(u.id, self.wav(u), u.text) for u in utterances]


# (neighbours, smoothing) of every frame bank in the records made before they were settings
FIRST_BANK = (4, 3)


def voice_hash(checkpoint: str, params: dict[str, torch.Tensor],
               frames: FrameBank | None = None) -> str:
    """Identity of a voice: the checkpoint folder, the adapted parameters' exact values and,
    when it speaks with one, its frame bank's, with how many neighbours and frames it averages
    where those are not the ones every bank had before they could be set (:data:`FIRST_BANK`,
    so that the voices of earlier records keep their ids, whatever the defaults become), and the
    upper bins' own count where it has one."""
    h = hashlib.sha1(checkpoint.encode())
    tensors = params if frames is None else {**params, **frames.tensors("\0frames.")}
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    if frames is not None and (frames.neighbours, frames.smoothing) != FIRST_BANK:
        h.update(f"\0frames:{frames.neighbours}:{frames.smoothing}".encode())
    if frames is not None and frames.upper_neighbours:
        h.update(f"\0frames-upper:{frames.upper_neighbours}:{frames.upper_bin}".encode())
    return h.hexdigest()[:16]


def clip_key(voice: str, speaker: str, text: str) -> tuple[str, str, str]:
    return (voice, speaker, text)


def vocoder_path(r: dict) -> str | None:
    """The vocoder path a record's clip was made with (bf16, fast, exact; see metatts.vocoder).
    A record written before records named it counts as made with the default path, the one
    ``python -m eval`` takes (metatts.vocoder.default_mode: $METATTS_VOCODER, else by the CPU),
    so that a resume of such a run takes its records as before."""
    if "vocoder" in r:
        return r["vocoder"]
    from metatts.vocoder import default_mode

    return default_mode()


def known_clips(records: list[dict]) -> dict[tuple, dict]:
    """Clip key -> the measured fields of a recorded clip (see CLIP_FIELDS)."""
    return {clip_key(r["voice"], r["speaker"], r["text"]): {k: r.get(k) for k in CLIP_FIELDS}
            for r in records if r.get("voice")}


def measure_clips(wavs: list[np.ndarray], texts: list[str], task: Task, refs: Bank,
                  scorer: Scorer, seconds: list[tuple[float, float]]) -> list[dict]:
    """Judge a batch of synthesized clips of ``task``'s speaker: the CLIP_FIELDS of each.
    ``seconds``: each clip's synthesis time, wall and the process's CPU (every thread's)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    measured: list[Measured] = scorer.measure(wavs, audio.SAMPLE_RATE)
    per_clip = (time.perf_counter() - started) / max(len(wavs), 1)
    cpu_per_clip = (time.process_time() - cpu_started) / max(len(wavs), 1)
    ecapa_refs, ge2e_refs = refs.of(task, "ecapa"), refs.of(task, "ge2e")
    said = [metrics.normalize(u.text) for u in task.test]  # what each reference clip says
    out = []
    for wav, text, m, (synth, synth_cpu) in zip(wavs, texts, measured, seconds):
        errors, words = metrics.word_errors(text, m.transcript)
        secs_ge2e = None if m.ge2e is None or ge2e_refs is None else \
            float(mean_cosine(m.ge2e[None], ge2e_refs)[0])
        # ``secs`` averages over every reference, the real clip of this very sentence among
        # them, where the ceiling compares each real clip with the others (other sentences
        # only); ``secs_other`` leaves the same sentence's clip out, as the ceiling does
        other = [i for i, t in enumerate(said) if t != metrics.normalize(text)] or \
            list(range(len(said)))
        secs_ge2e_other = None if secs_ge2e is None else \
            float(mean_cosine(m.ge2e[None], ge2e_refs[other])[0])
        out.append({"transcript": m.transcript, "wer": errors / words, "errors": errors,
                    "words": words, "secs": float(mean_cosine(m.ecapa[None], ecapa_refs)[0]),
                    "secs_ge2e": secs_ge2e,
                    "secs_other": float(mean_cosine(m.ecapa[None], ecapa_refs[other])[0]),
                    "secs_ge2e_other": secs_ge2e_other, "mos": m.mos,
                    "audio_seconds": len(wav) / audio.SAMPLE_RATE,
                    "synthesis_seconds": synth, "score_seconds": per_clip,
                    "synthesis_cpu_seconds": synth_cpu, "score_cpu_seconds": cpu_per_clip})
    return out


def run_group(units: list[Unit], base: Checkpoint, scorer: Scorer, loader: Loader,
              refs: Bank, known: dict[tuple, dict],
              vocoder: Vocoder | None, setup: str) -> Iterator[list[dict]]:
    """Units of one method and task that differ only in their step count: one adaptation of the
    largest count, keeping the parameters at every count (the same as adapting each separately,
    since shorter runs take the same first steps); then the clips not in ``known`` are
    synthesized and judged in one batch (and added to ``known``). ``adapt_seconds`` of a unit is
    the time to reach its step count. Yields the records of each unit in turn, each carrying
    ``setup`` (:func:`setup_id` of the group)."""
    task: Task = units[0].task
    counts = sorted({u.steps for u in units})
    settings = settings_for(units[0].method, base, counts[-1], task.seed)
    result = adapt(loader.clips(task.support), base, settings, keep=counts)
    voices = {n: voice_hash(units[0].method.checkpoint, result.kept[n].params,
                            result.kept[n].frames) for n in counts}
    todo: dict[tuple, tuple[int, str]] = {}  # clip key -> (steps, text), in order
    for u in units:
        for t in task.test:
            key = clip_key(voices[u.steps], task.speaker, t.text)
            if key not in known:
                todo.setdefault(key, (u.steps, t.text))
    wavs, seconds = [], []
    for steps, text in todo.values():
        started, cpu_started = time.perf_counter(), time.process_time()
        wavs.append(synthesize(base, text, result.kept[steps].params, vocoder=vocoder,
                               frames=result.kept[steps].frames).wav)
        seconds.append((time.perf_counter() - started, time.process_time() - cpu_started))
    texts = [text for _, text in todo.values()]
    mode = getattr(vocoder, "mode", None)  # which vocoder path made the clip (bf16, fast...)
    known.update(zip(todo, ({**m, "vocoder": mode} for m in
                            measure_clips(wavs, texts, task, refs, scorer, seconds))))
    for u in units:
        kept: Kept = result.kept[u.steps]
        yield [{**unit_record(u, voices[u.steps], t.text, kept,
                              known[clip_key(voices[u.steps], task.speaker, t.text)]),
                "setup": setup}
               for t in task.test]


def unit_record(unit: Unit, voice: str, text: str, kept: Kept, clip: dict) -> dict:
    """One line of results.jsonl: the unit, the clip's measurements and the adaptation's."""
    task: Task = unit.task
    return {
        "speaker": task.speaker, "group": task.group, "method": unit.method.name,
        "shots": unit.shots, "steps": unit.steps, "task": task.index, "seed": task.seed,
        "text": text, **clip, "adapt_seconds": kept.seconds,
        "adapt_cpu_seconds": kept.cpu_seconds, "final_loss": kept.loss,
        "n_test": len(task.test), "voice": voice,
        "support": [u.id for u in task.support], "references": [u.id for u in task.test],
        # early stopping: the step count the voice is from, when not the budget
        **({"stopped_at": kept.stopped_at} if kept.stopped_at not in (None, unit.steps) else {}),
    }


def check_resumable(units: list[Unit], bases: dict[str, Checkpoint], out: Path,
                    vocoder: Vocoder | None) -> tuple[list[dict], dict[tuple, str]]:
    """The records of ``out/results.jsonl`` and each (method, checkpoint folder, seed)'s setup
    id (:func:`setup_id`), or :class:`StaleResultsError` where some of this
    grid's were made with other adaptation settings, another checkpoint or another vocoder path
    than this run's: checked before any work (the benchmark calls it before it measures its
    references, and hands both to :func:`run_units`)."""
    path = out / RESULTS
    records = read_results(path, RECORD_FIELDS)
    setups = {}  # (method, checkpoint folder, seed) -> setup id
    for u in units:
        key = (u.method.name, u.method.checkpoint, u.task.seed)
        if key not in setups:
            setups[key] = setup_id(u.method, bases[u.method.checkpoint], u.task.seed)
    wanted = {unit_key(u.method.name, u.task.speaker, u.shots, u.task.seed, u.steps):
              setups[u.method.name, u.method.checkpoint, u.task.seed] for u in units}
    stale = sorted({r["method"] for r in records if "setup" in r
                    and wanted.get(record_key(r), r["setup"]) != r["setup"]})
    if stale:
        raise StaleResultsError(
            f"{path} holds results of {', '.join(stale)} made with other adaptation settings or "
            "another checkpoint than this run's. Give a new --out folder, or move that "
            "results.jsonl away to measure again (records written before setups were recorded "
            "are reused as they are).")
    # the vocoder path is not part of the setup (the voice does not depend on it), but a clip
    # does: records and clips of another path are neither kept in this run's tables nor reused
    mode = getattr(vocoder, "mode", None)
    others = sorted({str(vocoder_path(r)) for r in records
                     if record_key(r) in wanted and vocoder_path(r) != mode})
    if others:
        raise StaleResultsError(
            f"{path} holds results of this grid whose clips were made with the "
            f"{', '.join(others)} vocoder path, and this run makes them with {mode} (records "
            "without a vocoder field count as made with the default path). Resume "
            f"with the same path (METATTS_VOCODER={others[0]} python -m eval ...), or give a new "
            "--out folder, or move that results.jsonl away to measure again.")
    return records, setups


def run_units(units: list[Unit], bases: dict[str, Checkpoint], scorer: Scorer, out: Path,
              refs: Bank, records: list[dict], setups: dict[tuple, str], *,
              vocoder: Vocoder | None = None, progress: bool = True) -> list[str]:
    """Run every unit not yet in ``out/results.jsonl``; returns the problems met (one sentence
    each). ``bases`` maps a method's checkpoint folder name to the loaded checkpoint;
    ``records`` and ``setups`` are what :func:`check_resumable` found for these units."""
    from tqdm import tqdm

    path = out / RESULTS
    mode = getattr(vocoder, "mode", None)
    have = recorded_texts(records)
    # clips of this path are reused, each recorded with its path (one older than the field too)
    known = known_clips([{**r, "vocoder": mode} for r in records if vocoder_path(r) == mode])
    # a unit is done when every sentence this run wants of it is recorded (a resume may ask for
    # more test sentences than the run that wrote the records)
    todo = [u for u in units
            if not {t.text for t in u.task.test} <= have.get(unit_drawn_key(u), set())]
    groups: dict[tuple, list[Unit]] = {}  # one adaptation per method and task
    for u in todo:
        groups.setdefault((u.method.name, u.task.speaker, u.shots, u.task.seed), []).append(u)
    loader, problems = Loader(), []
    if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        with path.open("a", encoding="utf-8") as f:  # a line cut off by a kill: end it, so that
            f.write("\n")  # the next record does not join it
    with path.open("a", encoding="utf-8") as f, \
            tqdm(total=len(units), initial=len(units) - len(todo), disable=not progress,
                 unit="unit", desc="benchmark") as bar:
        for group in groups.values():
            unit, done = group[0], 0
            try:
                setup = setups[unit.method.name, unit.method.checkpoint, unit.task.seed]
                for records in run_group(group, bases[unit.method.checkpoint], scorer, loader,
                                         refs, known, vocoder, setup):
                    f.writelines(json.dumps(r) + "\n" for r in records  # none twice
                                 if r["text"] not in have.get(drawn_key(r), ()))
                    done += 1
                f.flush()
                bar.update(done)
            except BAD_DATA as err:
                steps = ",".join(str(u.steps) for u in group[done:])
                problems.append(f"{unit.method.name}, speaker {unit.task.speaker}, k={unit.shots}"
                                f", task {unit.task.index}, {steps} steps: skipped ({err})")
                f.flush()
                bar.update(len(group))
    return problems
