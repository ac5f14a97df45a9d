"""The training loss of the acoustic model, as named parts and their weighted total."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from metatts.model.aligner import binarization_loss, forward_sum_loss
from metatts.model.config import LossConfig


@dataclass(frozen=True)
class LossOutput:
    total: Tensor  # scalar, the weighted sum that is optimized
    parts: dict[str, Tensor]  # unweighted: mel, postnet, duration, energy, align, binarization,
    # pitch, speaker_encoder, consistency, novel
    # what each part is a mean over (elements, tokens, items...), so that the losses of a batch's
    # parts pool into the loss of the whole batch (:func:`pool`)
    counts: dict[str, Tensor] = field(default_factory=dict)
    # in training, the model's outputs and the batch they are for (warped items included), for
    # terms computed outside the model (metatts.train.adversarial)
    output: object = None
    batch: object = None

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
    for name in ("consistency", "novel"):  # mean over dimensions of the items' vectors
        pair = getattr(out, name, None)
        if pair is not None:
            parts[name] = torch.nn.functional.mse_loss(*pair)
    frames, tokens = batch.mel_mask.sum() * out.mel.shape[1], batch.token_mask.sum()
    counts = {"mel": frames, "postnet": frames, "duration": tokens, "energy": tokens}
    if "align" in parts:  # CTC's "mean": over items of each item's loss per token
        counts["align"] = torch.tensor(float(len(batch.token_lengths)), device=out.mel.device)
        counts["binarization"] = align.hard.sum()
    if "pitch" in parts:
        counts["pitch"] = out.pitch_mask.sum()
    if "speaker_encoder" in parts:
        counts["speaker_encoder"] = keep.sum()
    for name in ("consistency", "novel"):
        if name in parts:
            counts[name] = torch.tensor(float(getattr(out, name)[0].numel()),
                                        device=out.mel.device)
    counts = {k: counts[k] for k in parts}
    return LossOutput(weighted_total(parts, weights, binarization_weight), parts, counts)


def weighted_total(parts: dict[str, Tensor], weights: LossConfig,
                   binarization_weight: float = 1.0) -> Tensor:
    scale = {"binarization": weights.binarization * binarization_weight}
    return sum(getattr(weights, k) * v if k not in scale else scale[k] * v
               for k, v in parts.items())


def pool(outputs: Sequence[LossOutput], weights: LossConfig,
         binarization_weight: float = 1.0) -> LossOutput:
    """The loss of a batch from the losses of its parts (disjoint sets of its items): each part
    is the count-weighted mean of the parts' (``LossOutput.counts``), so the result equals the
    loss of the whole batch up to float rounding, without its padding."""
    if len(outputs) == 1:
        return outputs[0]
    names = list(outputs[0].parts)
    if any(list(o.parts) != names for o in outputs):
        raise ValueError("the parts of a split batch computed different loss terms: "
                         f"{[sorted(o.parts) for o in outputs]}")
    missing = [n for n in names if any(n not in o.counts for o in outputs)]
    if missing:
        raise ValueError(f"loss terms {missing} carry no count; they cannot be pooled")
    parts, counts = {}, {}
    for name in names:
        counts[name] = sum(o.counts[name] for o in outputs)
        parts[name] = sum(o.parts[name] * o.counts[name] for o in outputs) / counts[name].clamp(min=1)
    return LossOutput(weighted_total(parts, weights, binarization_weight), parts, counts)
