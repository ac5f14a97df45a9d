"""Similarity read two ways that raw cosines are not: the share of the floor-to-ceiling gap closed,
and the steps fine-tuning needs to match the meta-learned start.

- Gap closed, per speaker: (secs - floor) / (ceiling - floor), where ceiling = the mean cosine
  between *different* real test clips of the speaker and floor = the mean cosine of its real clips
  to other speakers' real clips (both from the ``real`` reference records, same encoder); then the
  mean over the speakers of the cell (each speaker counts once, whatever its clip count).
- Steps to match: the step count at which a method's mean similarity first reaches a target,
  linearly interpolated between the grid's step counts; None when it never does on the grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Bounds:
    floor: float  # mean cosine of the speaker's real clips to other speakers' real clips
    ceiling: float  # mean cosine between different real clips of the speaker


def speaker_bounds(references: list[dict], metric: str = "secs") -> dict[str, Bounds]:
    """Speaker -> floor and ceiling of ``metric`` ("secs" or "secs_ge2e") from the ``real``
    reference records (fields ``metric`` and ``metric_floor``); speakers lacking either are
    left out."""
    values: dict[str, tuple[list[float], list[float]]] = {}
    for r in references:
        if r["kind"] != "real":
            continue
        ceiling, floor = values.setdefault(r["speaker"], ([], []))
        if r.get(metric) is not None:
            ceiling.append(r[metric])
        if r.get(f"{metric}_floor") is not None:
            floor.append(r[f"{metric}_floor"])
    return {s: Bounds(float(np.mean(f)), float(np.mean(c)))
            for s, (c, f) in values.items() if c and f}


def gap_closed_by_speaker(records: list[dict], bounds: Mapping[str, Bounds],
                          metric: str = "secs") -> dict[str, float]:
    """Speaker -> (mean ``metric`` of its clips - floor) / (ceiling - floor), for the speakers
    with bounds and a positive gap."""
    by: dict[str, list[float]] = {}
    for r in records:
        if r.get(metric) is not None:
            by.setdefault(r["speaker"], []).append(r[metric])
    out = {}
    for speaker, xs in sorted(by.items()):
        b = bounds.get(speaker)
        if b is not None and b.ceiling > b.floor:
            out[speaker] = (float(np.mean(xs)) - b.floor) / (b.ceiling - b.floor)
    return out


def gap_closed(records: list[dict], bounds: Mapping[str, Bounds],
               metric: str = "secs") -> float | None:
    """The mean over speakers of :func:`gap_closed_by_speaker`; None without any."""
    per = gap_closed_by_speaker(records, bounds, metric)
    return float(np.mean(list(per.values()))) if per else None


def steps_to_reach(curve: Mapping[int, float], target: float) -> float | None:
    """The first step count at which ``curve`` (steps -> mean similarity) reaches ``target``,
    linear between grid points: 0 if it starts there, None if no grid point reaches it."""
    points = sorted(curve.items())
    if not points:
        return None
    if points[0][1] >= target:
        return float(points[0][0])
    for (s0, y0), (s1, y1) in zip(points, points[1:]):
        if y1 >= target:  # y0 < target <= y1
            return s0 + (target - y0) / (y1 - y0) * (s1 - s0)
    return None
