"""Mel post-filter against over-smoothing, with strengths measured from the training data.

A mel decoder trained with an L1 loss predicts something close to the conditional mean, so its
mels carry less fine structure than real speech (harmonics and formant edges across mel bins,
quick changes across frames); the vocoder then makes a duller, less speaker-like voice. This is
the global-variance idea of statistical parametric synthesis, applied to the detail only: the
detail of a mel around a local mean (a moving average over ``spectral_kernel`` bins, then over
``temporal_kernel`` frames) is scaled up by the ratio of real to predicted detail.

:func:`estimate` sets the strengths on training utterances so that the filtered free-running
prediction has the RMS detail of the real mel of the same text and speaker, across bins and
across frames (:func:`match_detail`). Nothing is tuned on a speaker-similarity or WER score.
The strengths live in the checkpoint's config (:class:`~metatts.model.config.PostFilterConfig`),
so every synthesis from that checkpoint (the CLI, the app, ``python -m eval``) uses them;
``python -m metatts postfilter`` writes them.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from metatts.model.config import PostFilterConfig

DEFAULT_UTTERANCES = 160  # training utterances measured by estimate()


def local_mean(x: Tensor, kernel: int, dim: int) -> Tensor:
    """Moving average of (n_mels, T) ``x`` over ``kernel`` steps along ``dim`` (0: bins,
    1: frames), edges padded by repetition so the mean stays unbiased there."""
    if kernel == 1:
        return x
    rows = x if dim == 1 else x.T
    padded = F.pad(rows[None], (kernel // 2, kernel // 2), mode="replicate")
    mean = F.avg_pool1d(padded, kernel, stride=1)[0]
    return mean if dim == 1 else mean.T


def detail(x: Tensor, kernel: int, dim: int) -> Tensor:
    return x - local_mean(x, kernel, dim)


def apply(mel: Tensor, config: PostFilterConfig) -> Tensor:
    """(n_mels, T) log-mel -> the same with its detail scaled (spectral, then temporal)."""
    if mel.dim() != 2:
        raise ValueError(f"postfilter.apply takes one (n_mels, T) mel, got {tuple(mel.shape)}.")
    out = mel.float()
    for strength, kernel, dim in ((config.spectral, config.spectral_kernel, 0),
                                  (config.temporal, config.temporal_kernel, 1)):
        if strength != 1.0 and out.shape[dim] > 1:
            mean = local_mean(out, kernel, dim)
            out = mean + strength * (out - mean)
    return out


def detail_ratios(real: Sequence[Tensor], predicted: Sequence[Tensor],
                  spectral_kernel: int = 3, temporal_kernel: int = 5) -> tuple[float, float]:
    """RMS detail of ``real`` mels over that of ``predicted`` ones (each (n_mels, T), any
    lengths), across bins and across frames."""
    if not real or len(real) != len(predicted):
        raise ValueError("detail_ratios needs the same positive number of real and predicted mels.")

    def rms(mels, kernel, dim):
        return torch.cat([detail(m.float(), kernel, dim).flatten() for m in mels]).square().mean()

    spectral = (rms(real, spectral_kernel, 0) / rms(predicted, spectral_kernel, 0)).sqrt()
    temporal = (rms(real, temporal_kernel, 1) / rms(predicted, temporal_kernel, 1)).sqrt()
    return float(spectral), float(temporal)


def match_detail(real: Sequence[Tensor], predicted: Sequence[Tensor], spectral_kernel: int = 3,
                 temporal_kernel: int = 5, iterations: int = 30) -> PostFilterConfig:
    """Strengths under which the filtered ``predicted`` mels have the ``real`` mels' RMS detail
    across bins and across frames. The two stages interact (sharpening across frames also adds
    detail across bins), so the ratios are re-measured on the filtered mels and the strengths
    corrected by the square root of each ratio, repeatedly (a damped fixed-point iteration; the
    undamped one oscillates when the detail is shared between the two)."""
    config = PostFilterConfig(spectral_kernel=spectral_kernel, temporal_kernel=temporal_kernel)
    for _ in range(iterations):
        filtered = [apply(m, config) for m in predicted]
        spectral, temporal = detail_ratios(real, filtered, spectral_kernel, temporal_kernel)
        config = dataclasses.replace(
            config, spectral=min(4.0, max(1e-3, config.spectral * spectral ** 0.5)),
            temporal=min(4.0, max(1e-3, config.temporal * temporal ** 0.5)))
    return dataclasses.replace(config, spectral=round(config.spectral, 3),
                               temporal=round(config.temporal, 3))


def estimate(checkpoint, utterances, cache, n: int = DEFAULT_UTTERANCES, seed: int = 0,
             spectral_kernel: int = 3, temporal_kernel: int = 5) -> PostFilterConfig:
    """Strengths for ``checkpoint`` from ``n`` of its training speakers' ``utterances`` (real mels
    from ``cache``, a :class:`~metatts.data.features.FeatureCache`; predictions free-running, as
    synthesis makes them, without any post-filter)."""
    from metatts.text import text_to_ids

    known = set(checkpoint.speakers)
    pool = sorted((u for u in utterances if u.speaker in known), key=lambda u: u.id)
    if not pool:
        raise ValueError("none of the utterances is by a speaker of this checkpoint; pass the "
                         "data it was trained on.")
    picked = random.Random(seed).sample(pool, min(n, len(pool)))
    model = checkpoint.model
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    real, predicted = [], []
    try:
        with torch.inference_mode():
            for u in picked:
                ids = text_to_ids(u.text, mode=checkpoint.config.data.tokens,
                                  table=checkpoint.symbols)
                tokens = torch.tensor([ids], device=device)
                pred = model.infer(tokens, torch.tensor([len(ids)], device=device),
                                   torch.tensor([checkpoint.speaker_id(u.speaker)], device=device))
                predicted.append(pred.mel[0, :, : int(pred.mel_lengths[0])].float().cpu())
                real.append(cache.get(u).mel)
    finally:
        model.train(was_training)
    return match_detail(real, predicted, spectral_kernel, temporal_kernel)
