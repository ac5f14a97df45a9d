"""Run the grid's units: adapt, synthesize the test sentences, score, append to results.jsonl.

Units of one method and task that differ only in their step count share one adaptation to the
largest count, which keeps the parameters at every smaller count (``adapt(..., keep=...)``):
the same parameters as separate adaptations, for the price of the longest one.

Each unit's records are appended (and flushed) as soon as they are scored, so an interrupted run
loses at most the unit in progress; a rerun skips every unit whose records are all present.
A unit that fails on bad data (unreadable audio, a transcript that does not fit, a diverged loss)
is reported in ``problems`` and skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from eval import metrics
from eval.grid import FINETUNE, Method, Task, Unit
from eval.scorer import Scorer
from metatts import audio
from metatts.adapt import (AdaptError, AdaptSettings, Clip, Kept, adapt, default_settings,
                           with_changes)
from metatts.data.utterance import Utterance
from metatts.model.checkpoint import Checkpoint, CheckpointError
from metatts.synthesis import synthesize
from metatts.text import TextError

RESULTS = "results.jsonl"
BAD_DATA = (audio.AudioError, AdaptError, TextError, CheckpointError)
Vocoder = Callable[[torch.Tensor], torch.Tensor]  # (80, T) log-mel -> (T * 256,) wav


def unit_key(method: str, speaker: str, shots: int, seed: int, steps: int) -> tuple:
    return (method, speaker, shots, seed, steps)


def record_key(r: dict) -> tuple:
    return unit_key(r["method"], r["speaker"], r["shots"], r["seed"], r["steps"])


def read_results(path: Path) -> list[dict]:
    """Records of results.jsonl; a last line cut off by an interruption is ignored."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def finished(records: list[dict]) -> set[tuple]:
    """Unit keys with every one of their test sentences recorded."""
    texts: dict[tuple, set[str]] = {}
    expected: dict[tuple, int] = {}
    for r in records:
        texts.setdefault(record_key(r), set()).add(r["text"])
        expected[record_key(r)] = max(expected.get(record_key(r), 0), r.get("n_test", 0))
    return {k for k, t in texts.items() if len(t) >= expected[k]}


def settings_for(method: Method, base: Checkpoint, steps: int, seed: int) -> AdaptSettings:
    """The method's adaptation settings with the grid's step budget and the task's seed: the
    meta-trained inner loop for meta methods, Adam or SGD on the pretrained model otherwise;
    then the method's overrides."""
    settings = default_settings(method.init, base)
    if method.base in FINETUNE:
        settings = with_changes(settings, optimizer=FINETUNE[method.base])
    types = {"lr": float, "batching": str, "batch_size": int}
    changes = {k: types[k](v) for k, v in method.overrides}
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


def run_group(units: list[Unit], base: Checkpoint, scorer: Scorer, loader: Loader,
              vocoder: Vocoder | None) -> Iterator[list[dict]]:
    """Units of one method and task that differ only in their step count: one adaptation of the
    largest count, keeping the parameters at every count (the same as adapting each separately,
    since shorter runs take the same first steps), then synthesize and score each unit's test
    sentences. ``adapt_seconds`` of a unit is the time to reach its step count. Yields the
    records of each unit in turn, as soon as they are scored."""
    task: Task = units[0].task
    counts = sorted({u.steps for u in units})
    settings = settings_for(units[0].method, base, counts[-1], task.seed)
    result = adapt(loader.clips(task.support), base, settings, keep=counts)
    for u in units:
        yield score_unit(u, base, result.kept[u.steps], scorer, loader, vocoder)


def score_unit(unit: Unit, base: Checkpoint, kept: Kept, scorer: Scorer, loader: Loader,
               vocoder: Vocoder | None) -> list[dict]:
    """Synthesize the unit's test sentences with the adapted parameters and score them."""
    task: Task = unit.task
    texts = [u.text for u in task.test]
    started = time.perf_counter()
    wavs = [synthesize(base, t, kept.params, vocoder=vocoder).wav for t in texts]
    synthesis_seconds = time.perf_counter() - started
    references = [loader.wav(u) for u in task.test]  # real held-out clips, never support
    scores = scorer.clips(wavs, audio.SAMPLE_RATE, texts, references, audio.SAMPLE_RATE)
    mos = scorer.mos(wavs, audio.SAMPLE_RATE)
    out = []
    for text, wav, score, m in zip(texts, wavs, scores, mos):
        errors, words = metrics.word_errors(text, score.transcript)
        out.append({
            "speaker": task.speaker, "method": unit.method.name, "shots": unit.shots,
            "steps": unit.steps, "task": task.index, "seed": task.seed, "text": text,
            "transcript": score.transcript, "wer": score.wer, "errors": errors, "words": words,
            "secs": score.secs, "mos": m, "adapt_seconds": kept.seconds,
            "final_loss": kept.loss, "n_test": len(texts),
            "audio_seconds": len(wav) / audio.SAMPLE_RATE,
            "synthesis_seconds": synthesis_seconds / len(texts),
            "support": [u.id for u in task.support], "references": [u.id for u in task.test],
        })
    return out


def run_units(units: list[Unit], bases: dict[str, Checkpoint], scorer: Scorer, out: Path, *,
              vocoder: Vocoder | None = None, progress: bool = True) -> list[str]:
    """Run every unit not yet in ``out/results.jsonl``; returns the problems met (one sentence
    each). ``bases`` maps a method's checkpoint folder name to the loaded checkpoint."""
    from tqdm import tqdm

    path = out / RESULTS
    done = finished(read_results(path))
    todo = [u for u in units if unit_key(u.method.name, u.task.speaker, u.shots, u.task.seed,
                                         u.steps) not in done]
    groups: dict[tuple, list[Unit]] = {}  # one adaptation per method and task
    for u in todo:
        groups.setdefault((u.method.name, u.task.speaker, u.shots, u.task.seed), []).append(u)
    loader, problems = Loader(), []
    with path.open("a", encoding="utf-8") as f, \
            tqdm(total=len(units), initial=len(units) - len(todo), disable=not progress,
                 unit="adapt", desc="benchmark") as bar:
        for group in groups.values():
            unit, done = group[0], 0
            try:
                for records in run_group(group, bases[unit.method.checkpoint], scorer, loader,
                                         vocoder):
                    f.writelines(json.dumps(r) + "\n" for r in records)
                    f.flush()
                    done += 1
                    bar.update(1)
            except BAD_DATA as err:
                steps = ",".join(str(u.steps) for u in group[done:])
                problems.append(f"{unit.method.name}, speaker {unit.task.speaker}, k={unit.shots}"
                                f", task {unit.task.index}, {steps} steps: skipped ({err})")
                bar.update(len(group) - done)
    return problems
