"""What a grid costs before it runs: adaptations, clips to synthesize and judge (after the reuse of
identical voices, see eval.runner), matched clips per cell; and its wall time from measured
per-unit costs (``python -m eval --plan [--costs-from RUN_DIR]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eval.grid import FINETUNE_START, Unit, option_values


@dataclass(frozen=True)
class Work:
    adaptations: dict[int, int]  # k -> adaptations (one per method and task, to the last step)
    max_steps: int
    clips: int  # clips to synthesize and judge: distinct (voice, speaker, text)
    records: int  # clips in the tables (one per unit and test sentence)
    per_cell: dict[tuple[str, str, int, int], int]  # (group, method, k, steps) -> clips


def count(units: list[Unit]) -> Work:
    """The work of ``units``. A step-0 voice is the checkpoint's start: from the mean voice, the
    same for every method of that checkpoint with that start, k and draw; from the speaker
    encoder's estimate (``finetune-encoder``; a meta checkpoint's start is taken to be one, as
    the shipped one is), or speaking with the clips' frames (``AdaptSettings.frames``, the
    default), one voice per set of support clips. Two draws with the same support clips give
    the same voice. An adaptation that stops early gives its last voice to the later step
    counts, which the run judges once: the count is an upper bound there."""
    adaptations: dict[int, set] = {}
    voices, records, per_cell = set(), 0, {}
    for u in units:
        support = tuple(x.id for x in u.task.support)
        adaptations.setdefault(u.shots, set()).add((u.method.name, u.task.speaker, support))
        options = option_values(u.method.overrides)
        start = options.get("start", FINETUNE_START.get(u.method.base, "checkpoint"))
        by_clips = options.get("frames", True) or start != "mean"
        voice = ((u.method.checkpoint, start, support if by_clips else ()) if u.steps == 0 else
                 (u.method.name, support, u.steps))
        for t in u.task.test:
            voices.add((voice, u.task.speaker, t.text))
        records += len(u.task.test)
        cell = (u.task.group, u.method.name, u.shots, u.steps)
        per_cell[cell] = per_cell.get(cell, 0) + len(u.task.test)
    return Work({k: len(v) for k, v in sorted(adaptations.items())},
                max((u.steps for u in units), default=0), len(voices), records, per_cell)


@dataclass(frozen=True)
class Costs:
    """Measured seconds per unit of work."""

    adapt_per_step: dict[int, float]  # k -> seconds per adaptation step
    synthesis: float  # per clip
    scoring: float  # per clip, every judge


def measured_costs(records: list[dict]) -> Costs:
    """Per-unit costs from an earlier run's results.jsonl (records with ``score_seconds``):
    adaptation seconds per step by k from the units with the most steps; synthesis and scoring
    per clip over the clips that were measured (not reused)."""
    per_step: dict[int, list[float]] = {}
    for r in records:
        if r["steps"]:
            per_step.setdefault(r["shots"], []).append(r["adapt_seconds"] / r["steps"])
    timed = [r for r in records if r.get("score_seconds") is not None]
    if not timed:
        raise ValueError("no record has score_seconds: run this version of the benchmark first")
    return Costs({k: float(np.median(v)) for k, v in sorted(per_step.items())},
                 float(np.median([r["synthesis_seconds"] for r in timed])),
                 float(np.median([r["score_seconds"] for r in timed])))


def wall_seconds(work: Work, costs: Costs) -> float:
    """Estimated wall time of ``work``: adaptations to the last step, then synthesis and scoring
    of every distinct clip. A k the costs were not measured at is priced per step in
    proportion to k from the nearest measured k (the support loss is over k clips)."""
    total = 0.0
    for k, n in work.adaptations.items():
        near = min(costs.adapt_per_step, key=lambda m: abs(m - k))
        total += n * work.max_steps * costs.adapt_per_step[near] * (k / near if k != near else 1)
    return total + work.clips * (costs.synthesis + costs.scoring)
