"""The training loss of the acoustic model, as named parts and their weighted total."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from metatts.model.aligner import binarization_loss, forward_sum_loss
from metatts.model.config import LossConfig


@dataclass(frozen=True)
class LossOutput:
    total: Tensor  # scalar, the weighted sum that is optimized
    parts: dict[str, Tensor]  # unweighted: mel, postnet, duration, energy, align, binarization,
    # pitch, speaker_encoder

    def items(self) -> dict[str, float]:
        """Python floats for logging: total and every part."""
        return {"total": float(self.total.detach()),
                **{k: float(v.detach()) for k, v in self.parts.items()}}


def masked_l1(pred: Tensor, target: Tensor, frame_mask: Tensor) -> Tensor:
    """Mean |pred - target| over real frames. pred, target (B, C, T), frame_mask (B, T)."""
    keep = frame_mask[:, None, :].to(pred.dtype)
    return ((pred - target).abs() * keep).sum() / (keep.sum() * pred.shape[1])


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over real positions. pred, target, mask (B, N)."""
    keep = mask.to(pred.dtype)
    return ((pred - target) ** 2 * keep).sum() / keep.sum().clamp(min=1)  # 0 with nothing kept


def acoustic_loss(out, batch, weights: LossConfig, binarization_weight: float = 1.0) -> LossOutput:
    """``out`` is a :class:`~metatts.model.fastspeech2.ModelOutput` for ``batch``.
    ``binarization_weight`` scales the binarization term (the trainer ramps it from 0 to 1)."""
    align = out.alignment
    parts = {
        "mel": masked_l1(out.mel, batch.mels, batch.mel_mask),
        "duration": masked_mse(out.log_duration, torch.log1p(align.durations.to(out.mel.dtype)),
                               batch.token_mask),
    }
    if align.logits is not None:  # not for fixed durations: no aligner ran
        parts["align"] = forward_sum_loss(align.logits, batch.token_lengths, batch.mel_lengths)
        parts["binarization"] = binarization_loss(align.hard, align.log_soft)
    if out.mel_postnet is not None:
        parts["postnet"] = masked_l1(out.mel_postnet, batch.mels, batch.mel_mask)
    if out.energy is not None:
        parts["energy"] = masked_mse(out.energy, out.energy_target, batch.token_mask)
    if out.pitch_target is not None:  # voiced tokens only
        parts["pitch"] = masked_mse(out.pitch, out.pitch_target, out.pitch_mask)
    if out.encoded_speaker is not None:  # mean over dimensions of the table speakers' items
        keep = out.speaker_target_mask[:, None].expand_as(out.encoded_speaker)
        parts["speaker_encoder"] = masked_mse(out.encoded_speaker, out.speaker_target, keep)
    scale = {"binarization": weights.binarization * binarization_weight}
    total = sum(getattr(weights, k) * v if k not in scale else scale[k] * v
                for k, v in parts.items())
    return LossOutput(total, parts)
