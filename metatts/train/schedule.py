"""Step-dependent factors: the learning-rate schedule and the binarization-loss warm-up."""

from __future__ import annotations

import math


def lr_factor(step: int, warmup: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then inverse square-root decay (Noam)."""
    step = max(step, 1)
    if warmup <= 0:
        return 1.0
    return min(step / warmup, math.sqrt(warmup / step))


def binarization_weight(step: int, start: int, ramp: int) -> float:
    """0 before ``start``, then linear to 1 over ``ramp`` steps (Badlani et al. turn the
    binarization loss on once the soft alignment has converged)."""
    if step < start:
        return 0.0
    return 1.0 if ramp <= 0 else min(1.0, (step - start) / ramp)


def step_seed(seed: int, step: int, rank: int) -> int:
    """The RNG seed for one process at one step: randomness (dropout) is a pure function of
    (seed, step, rank), so a resumed run draws what the uninterrupted one would have."""
    return (seed * 1_000_003 + step * 4099 + rank) % (2**63 - 1)
