"""The variance adaptor: duration, pitch and energy predictors, and length regulation.

Targets come from the hard alignment: a token's duration is its number of frames, its energy
the mean over those frames of the frame energy, 0.5 * log sum_k exp(2 * mel_k) (the log L2 norm
of the frame's mel magnitudes; no extra feature is needed). Energy conditions the decoder as in
FastPitch: the phoneme-level value goes through a small conv and is added to the hidden states.

Pitch (v2 models) is the same, before energy as in FastSpeech 2: a predictor of each token's
per-speaker normalized log-F0 (:mod:`metatts.data.pitch`) and a conv embedding of the value. A
token's target exists only where it has voiced frames; elsewhere (unvoiced or zero-length tokens,
clips with no voiced frame) the decoder sees the predictor's own value, detached, in training as
at synthesis, and the loss leaves the token out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metatts.model.layers import LayerNorm, conv1d_time_major


class VariancePredictor(nn.Module):
    """conv -> ReLU -> LayerNorm -> dropout, twice, then a linear to one value per token."""

    def __init__(self, dim: int, hidden: int, kernel: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv1d(dim, hidden, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2)
        self.norm1, self.norm2 = LayerNorm(hidden), LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, N, dim), mask (B, N) -> (B, N), zero at padding"""
        keep = mask[..., None].to(x.dtype)
        h = torch.relu(conv1d_time_major(x * keep, self.conv1))
        h = self.dropout(self.norm1(h)) * keep
        h = torch.relu(conv1d_time_major(h, self.conv2))
        h = self.dropout(self.norm2(h)) * keep
        return self.out(h)[..., 0] * mask


@dataclass(frozen=True)
class VarianceOutput:
    hidden: Tensor  # (B, N, dim) token states with the energy embedding added
    log_duration: Tensor  # (B, N) predicted log(1 + frames)
    energy: Tensor | None  # (B, N) predicted energy, None when the model has no energy
    pitch: Tensor | None = None  # (B, N) predicted normalized log-F0, None without pitch


class VarianceAdaptor(nn.Module):
    def __init__(self, dim: int, hidden: int, kernel: int, dropout: float, energy: bool,
                 pitch: bool = False):
        super().__init__()
        self.duration = VariancePredictor(dim, hidden, kernel, dropout)
        self.pitch = VariancePredictor(dim, hidden, kernel, dropout) if pitch else None
        self.pitch_embedding = nn.Conv1d(1, dim, 3, padding=1) if pitch else None
        self.energy = VariancePredictor(dim, hidden, kernel, dropout) if energy else None
        self.energy_embedding = nn.Conv1d(1, dim, 3, padding=1) if energy else None

    def forward(self, x: Tensor, mask: Tensor, energy_target: Tensor | None = None,
                pitch_target: Tensor | None = None, pitch_known: Tensor | None = None,
                predictor_input: Tensor | None = None) -> VarianceOutput:
        """x (B, N, dim); energy_target (B, N) during training (teacher forcing), else None;
        pitch_target (B, N) with pitch_known (B, N) bool, where the target holds (elsewhere the
        prediction, detached, is used). ``predictor_input`` (B, N, dim), when given, is what the
        predictors read instead of x (the embeddings of pitch and energy are added to both);
        the returned hidden states are always built on x."""
        p = x if predictor_input is None else predictor_input
        log_duration = self.duration(p, mask)
        pitch = energy = None
        if self.pitch is not None:
            pitch = self.pitch(p, mask)
            value = pitch.detach()
            if pitch_target is not None:
                value = torch.where(pitch_known, pitch_target, value)
            embedded = self.pitch_embedding((value * mask)[:, None]).transpose(1, 2)  # (B, N, dim)
            x, p = x + embedded * mask[..., None], p + embedded * mask[..., None]
        if self.energy is not None:
            energy = self.energy(p, mask)
            value = energy if energy_target is None else energy_target
            embedded = self.energy_embedding((value * mask)[:, None]).transpose(1, 2)  # (B, N, dim)
            x = x + embedded * mask[..., None]
        return VarianceOutput(x, log_duration, energy, pitch)


def frame_energy(mels: Tensor) -> Tensor:
    """(B, n_mels, T) log-mel -> (B, T) log L2 norm of each frame's mel magnitudes."""
    return 0.5 * torch.logsumexp(2 * mels, dim=1)


def token_average(values: Tensor, hard: Tensor) -> Tensor:
    """Mean of frame values over each token's frames. values (B, T), hard (B, T, N) -> (B, N)"""
    counts = hard.sum(1)
    return (hard * values[..., None]).sum(1) / counts.clamp(min=1)


def predicted_durations(log_duration: Tensor, mask: Tensor, pace: float = 1.0) -> Tensor:
    """(B, N) predicted log(1 + frames) -> int64 frames, at least 1 per real token, 0 at padding.
    ``pace`` > 1 speaks faster."""
    frames = torch.round((torch.exp(log_duration) - 1) / pace).clamp(min=1)
    return (frames * mask).long()
