"""The experiment grid: methods, held-out speakers, seeded few-shot tasks, and the work units.

For each speaker a fixed set of *test* clips is drawn once (seeded): their texts are the sentences
every method synthesizes, and their real recordings are the speaker-similarity references. Support
clips are then drawn per task from the speaker's other clips whose texts differ from every test
text, so support clips are never references and support and test texts never overlap.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import metatts
from eval.groups import group_of
from metatts.data.episodes import text_key
from metatts.data.utterance import Utterance

DEFAULT_DATA = Path(metatts.__file__).resolve().parent / "eval_speakers"
META_METHODS = ("maml", "fomaml", "reptile", "meta")  # checkpoint-dir/<name>/
# fine-tuning the pretrained model (checkpoint-dir/pretrained/): method -> (optimizer, start);
# "finetune-encoder" starts from the speaker encoder's estimate of the support clips without any
# meta-training (the zero-shot + fine-tune baseline; needs a model with an encoder), with the
# small steps such a start needs (metatts.adapt.ENCODER_FINETUNE: Adam 0.0005 on the decoder,
# timing locked; the inner loop of the shipped meta-learned start)
FINETUNE = {"finetune-adam": "adam", "finetune-sgd": "sgd", "finetune-encoder": "adam"}
FINETUNE_START = {"finetune-adam": "mean", "finetune-sgd": "mean", "finetune-encoder": "encoder"}


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a yes/no value (write 1 or 0)")


def _names(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.split("+") if v)


# method variants, each an AdaptSettings field: "finetune-sgd:batching=minibatch",
# "finetune-adam:lock_timing=1:proximal=0.5", "finetune-encoder:groups=embedding+adapters",
# "finetune-adam:terms=mel+postnet" (lists joined by "+")
OPTION_TYPES = {"lr": float, "batching": str, "batch_size": int, "optimizer": str,
                "start": str, "groups": _names, "proximal": float, "terms": _names,
                "identity": float, "lock_timing": _flag, "early_stop": _flag, "piece_frames": int,
                "precision": str, "frames": _flag, "frames_key": str, "verifier": float,
                "verifier_every": int, "frames_neighbours": int,
                "frames_upper": int}
OPTIONS = tuple(OPTION_TYPES)


@dataclass(frozen=True)
class Method:
    """One way to adapt: a checkpoint, an init and (optionally) inner-loop overrides."""

    name: str  # as given, e.g. "reptile" or "finetune-sgd:batching=stochastic:lr=0.1"
    base: str  # "maml", ..., "finetune-adam", "finetune-sgd"
    overrides: tuple[tuple[str, str], ...] = ()  # (option, value) from the name

    @property
    def init(self) -> str:
        return "pretrained" if self.base in FINETUNE else "meta"

    @property
    def checkpoint(self) -> str:
        """The sub-folder of the checkpoint directory holding its checkpoint."""
        return "pretrained" if self.base in FINETUNE else self.base

    @property
    def is_variant(self) -> bool:
        return bool(self.overrides)


def parse_method(name: str) -> Method:
    """``base[:option=value]...``; ValueError names the choices."""
    base, *parts = name.split(":")
    if base not in META_METHODS and base not in FINETUNE:
        raise ValueError(f"unknown method {base!r}; choose from "
                         f"{', '.join((*META_METHODS, *FINETUNE))}, optionally with "
                         f"':option=value' overrides ({', '.join(OPTIONS)}).")
    overrides = []
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or key not in OPTIONS or not value:
            raise ValueError(f"method {name!r}: bad override {part!r}; write option=value with "
                             f"option one of {', '.join(OPTIONS)}.")
        overrides.append((key, value))
    try:  # a bad value is refused here, before any work, not in the middle of a run
        from metatts.adapt import AdaptSettings

        AdaptSettings(**option_values(overrides))
    except (ValueError, TypeError) as err:
        raise ValueError(f"method {name!r}: {err}") from None
    return Method(name, base, tuple(overrides))


def option_values(overrides) -> dict:
    """(option, text) pairs -> AdaptSettings changes of the right types."""
    return {key: OPTION_TYPES[key](value) for key, value in overrides}


def optimizer_study(lrs: tuple[float, ...]) -> list[str]:
    """Method names of the inner-optimizer experiment: plain SGD from the pretrained model with
    full-batch (``finetune-sgd`` itself), stochastic (one clip) and mini-batch (2 clips) steps,
    and a learning-rate sweep of full-batch SGD. With k = 1 the three batchings coincide."""
    return ["finetune-sgd", "finetune-sgd:batching=stochastic",
            "finetune-sgd:batching=minibatch:batch_size=2",
            *(f"finetune-sgd:lr={lr:g}" for lr in lrs)]


@dataclass(frozen=True)
class Task:
    """k support clips of one speaker, and that speaker's fixed test clips."""

    speaker: str
    index: int  # task number for this speaker and k
    seed: int  # the seed that drew the support clips
    support: tuple[Utterance, ...]
    test: tuple[Utterance, ...]  # texts to synthesize; real recordings = similarity references
    group: str = "engine"  # the speaker's group (eval.groups)


@dataclass(frozen=True)
class Unit:
    """One adaptation and its synthesized test sentences: the grain of resuming."""

    method: Method
    task: Task
    steps: int

    @property
    def shots(self) -> int:
        return len(self.task.support)


def _rng(seed: int, *keys: object) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(str(k).encode()) for k in keys)])


def by_speaker(utterances: tuple[Utterance, ...] | list[Utterance]) -> dict[str, list[Utterance]]:
    """Speaker -> clips with distinct texts (the first by id of each text), sorted by id."""
    groups: dict[str, dict[str, Utterance]] = {}
    for u in sorted(utterances, key=lambda u: u.id):
        groups.setdefault(u.speaker, {}).setdefault(text_key(u.text), u)
    return {s: sorted(g.values(), key=lambda u: u.id) for s, g in sorted(groups.items())}


def pick_test_clips(clips: list[Utterance], n_test: int, seed: int) -> tuple[Utterance, ...]:
    """The speaker's fixed test clips: ``n_test`` drawn with a seed that depends only on the
    speaker, so every method, k and task synthesizes the same sentences."""
    chosen = _rng(seed, "test", clips[0].speaker).choice(len(clips), n_test, replace=False)
    return tuple(clips[i] for i in sorted(chosen))


def draw_tasks(utterances, shots: tuple[int, ...], n_test: int, tasks: int, seed: int,
               groups: Mapping[str, str] | None = None) -> tuple[list[Task], dict[str, str]]:
    """Every (speaker, k, task) with its support draw, and speaker -> why it was (partly) left
    out: a speaker needs k + n_test clips with distinct texts for each k (and more, for its
    draws to differ). ``groups``: speaker -> group (default: from the name)."""
    out, skipped = [], {}
    for speaker, clips in by_speaker(utterances).items():
        if len(clips) < n_test + min(shots):
            skipped[speaker] = (f"{len(clips)} clips with distinct texts; needs at least "
                                f"{n_test} test + {min(shots)} support. Left out.")
            continue
        test = pick_test_clips(clips, n_test, seed)
        keys = {text_key(u.text) for u in test}
        pool = [u for u in clips if text_key(u.text) not in keys]
        too_many = [k for k in shots if k > len(pool)]
        if too_many:
            skipped[speaker] = (f"{len(clips)} clips with distinct texts; k = "
                                f"{', '.join(map(str, too_many))} needs k + {n_test} test. "
                                "Left out for those k.")
        group = (groups or {}).get(speaker) or group_of(speaker)
        for k, index in itertools.product([k for k in shots if k <= len(pool)], range(tasks)):
            task_seed = seed * 1000 + index
            chosen = _rng(task_seed, "support", speaker, k).choice(len(pool), k, replace=False)
            out.append(Task(speaker, index, task_seed, tuple(pool[i] for i in chosen), test,
                            group))
    return out, skipped


def units(methods: list[Method], tasks: list[Task], steps: tuple[int, ...]) -> list[Unit]:
    """The full grid: every method x task (speaker, k, draw) x step count."""
    return [Unit(m, t, n) for m, t, n in itertools.product(methods, tasks, steps)]
