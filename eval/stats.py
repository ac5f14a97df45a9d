"""Statistics of the benchmark tables: cluster-bootstrap intervals, a paired test, Holm's method.

- Interval: 95 % percentile bootstrap of the mean, resampling whole *clusters* with replacement,
  so that clips sharing a speaker and a support draw are not counted as independent. The
  report's clusters are voices (:func:`voice_bootstrap`), so that an interval speaks of voices
  like these rather than of these voices' draws; a group of one voice (the real one) resamples
  its support draws (one cluster = one speaker's task: its adaptation and all its test
  sentences).
- Paired test: Wilcoxon signed-rank test (two-sided, scipy, zero differences dropped: "wilcox")
  on pairs matched by (speaker, task, text) between a method and the fine-tuning baseline. The
  clips of one adaptation share its voice and are not independent, so a clip-level p is
  optimistic; :func:`cluster_test` tests the means of clusters (draws, or voices) instead.
- Multiple tests: Holm's step-down adjustment of the p-values of one family (controls the
  family-wise error rate; no independence assumed).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int  # values
    clusters: int


def cluster_bootstrap(values: Sequence[float], clusters: Sequence[Hashable],
                      resamples: int = BOOTSTRAP, seed: int = 0) -> Interval:
    """Mean of ``values`` with its percentile bootstrap interval over ``clusters``."""
    x = np.asarray(values, dtype=float)
    if len(x) != len(clusters):
        raise ValueError(f"{len(x)} values but {len(clusters)} cluster labels")
    if len(x) == 0:
        raise ValueError("no values to summarize")
    _, label = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    sums = np.bincount(label, weights=x)  # (C,)
    counts = np.bincount(label).astype(float)  # (C,)
    draws = np.random.default_rng(seed).integers(len(sums), size=(resamples, len(sums)))
    means = sums[draws].sum(1) / counts[draws].sum(1)  # (resamples,)
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(float(x.mean()), float(low), float(high), len(x), len(sums))


def voice_bootstrap(values: Sequence[float], voices: Sequence[Hashable],
                    draws: Sequence[Hashable], resamples: int = BOOTSTRAP,
                    seed: int = 0) -> Interval:
    """Mean of ``values`` with its percentile bootstrap interval over the voices (each voice's
    clips resampled whole); with a single voice, over that voice's ``draws`` instead. Resampling
    the draws within each drawn voice too would count the within-voice spread twice and give
    intervals wider than 95 % (measured in a review: 100 % coverage, 40 % too wide), so only the
    top level is resampled. ``clusters`` of the result counts what was resampled."""
    if len(values) != len(voices):
        raise ValueError(f"{len(values)} values but {len(voices)} voice labels")
    if len({str(v) for v in voices}) > 1:
        return cluster_bootstrap(values, voices, resamples, seed)
    return cluster_bootstrap(values, draws, resamples, seed)


@dataclass(frozen=True)
class PairedTest:
    p: float | None  # None when every difference is zero or there are no pairs
    pairs: int
    mean_difference: float | None  # method - baseline


def paired_test(method: dict[Hashable, float], baseline: dict[Hashable, float]) -> PairedTest:
    """Wilcoxon signed-rank test on the keys both have (matched samples)."""
    from scipy.stats import wilcoxon

    keys = sorted(set(method) & set(baseline), key=str)
    d = np.array([method[k] - baseline[k] for k in keys], dtype=float)
    if len(d) == 0:
        return PairedTest(None, 0, None)
    if not np.any(d):
        return PairedTest(None, len(d), 0.0)
    return PairedTest(float(wilcoxon(d, zero_method="wilcox").pvalue), len(d), float(d.mean()))


def cluster_test(pairs: Sequence[tuple[float, float, Hashable]]) -> PairedTest:
    """The paired test on cluster means: ``pairs`` are (baseline, method, cluster) per clip; each
    cluster's clips are averaged on both sides first, so that clips sharing an adaptation (a
    speaker's draw) or a voice count once. With few clusters the smallest p is large (2
    ** (1 - n) two-sided for n clusters: 0.25 for 3, 0.016 for 7)."""
    sums: dict[Hashable, list[float]] = {}
    for x, y, c in pairs:
        s = sums.setdefault(c, [0.0, 0.0, 0])
        s[0], s[1], s[2] = s[0] + x, s[1] + y, s[2] + 1
    return paired_test({c: y / n for c, (_, y, n) in sums.items()},
                       {c: x / n for c, (x, _, n) in sums.items()})


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values, in the given order; None (no test) stays None and is not counted.

    With the m p-values sorted ascending, p_(i) becomes max over j <= i of
    min(1, (m - j + 1) p_(j)).
    """
    index = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(index):
        running = max(running, min(1.0, (len(index) - rank) * pvalues[i]))
        out[i] = running
    return out
