"""Frame matching: a voice's own spectra, found through the model's rendering of its clips.

A speaker vector renders an unseen voice only as near as the training voices let it (zero-shot
similarity about 0.3 on held-out voices, README). The voice's clips hold what the vector misses,
frame by frame, and the model can say where each of their frames belongs: rendered teacher-forced
(the clip's words, the aligner's durations, the clip's own pitch and energy) the model makes a
*twin* of every clip whose frames line up one to one with the clip's. A :class:`FrameBank` keeps
both, twin and real frames side by side. At synthesis, each frame the model makes is matched to
its ``k`` nearest twin frames (Euclidean distance of log-mel frames: the twin and the new frame
come from the same model and voice vector, so distance means "the model rendered this sound
alike") and the mean of those neighbours' differences, real minus twin, averaged over a few
consecutive frames, is added to it: the model's frame, corrected by what the real voice did
differently where the model's rendering was like this one. The correction replaces the mel
post-filter (the real frames bring their own detail). Like kNN-VC (Baas et al., 2023), which
matches frames by self-supervised speech features, it needs no training; the model's own output
space serves as the matching feature.

It costs one teacher-forced pass over the clips (fractions of a second) and a distance matrix per
sentence. A bank travels in a voice file (:mod:`metatts.voice`) as two float16 tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

NEIGHBOURS = 4  # frames averaged per match (kNN-VC's k); measured in README
# the correction is averaged over this many consecutive frames (odd; 1: none): neighbours chosen
# frame by frame jump between clips, and so would the correction; measured in README
SMOOTHING = 3
CHUNK_CLIPS = 8  # clips per teacher-forced batch when a bank is built


@dataclass(frozen=True)
class FrameBank:
    """The twin (F, n_mels) and real (F, n_mels) log-mel frames of a voice's clips, row i of one
    the same moment as row i of the other; how many neighbours a match averages, and over how
    many consecutive frames the correction is averaged."""

    twin: Tensor
    real: Tensor
    neighbours: int = NEIGHBOURS
    smoothing: int = SMOOTHING

    def __post_init__(self) -> None:
        if self.twin.dim() != 2 or self.twin.shape != self.real.shape:
            raise ValueError(f"a frame bank's twin and real frames are two (frames, n_mels) "
                             f"tensors of one shape; got {tuple(self.twin.shape)} and "
                             f"{tuple(self.real.shape)}.")
        if len(self.twin) < 1:
            raise ValueError("a frame bank needs at least one frame.")
        if self.neighbours < 1:
            raise ValueError(f"neighbours must be at least 1, got {self.neighbours}.")
        if self.smoothing < 1 or self.smoothing % 2 == 0:
            raise ValueError(f"smoothing must be an odd number of frames, got {self.smoothing}.")

    @property
    def frames(self) -> int:
        return len(self.twin)

    def apply(self, mel: Tensor) -> Tensor:
        """A (n_mels, T) log-mel the model made in this voice -> the same with each frame moved
        by the mean real-minus-twin difference of its nearest twin frames, averaged over
        ``smoothing`` consecutive frames (module docstring)."""
        if mel.dim() != 2 or mel.shape[0] != self.twin.shape[1]:
            raise ValueError(f"expected one (n_mels={self.twin.shape[1]}, T) mel, got "
                             f"{tuple(mel.shape)}.")
        frames = mel.T.float()  # (T, n_mels)
        twin, real = self.twin.float(), self.real.float()
        k = min(self.neighbours, len(twin))
        nearest = torch.cdist(frames, twin).topk(k, dim=1, largest=False).indices  # (T, k)
        correction = (real[nearest] - twin[nearest]).mean(1).T  # (n_mels, T)
        if self.smoothing > 1:  # a centred moving average, the edge frames repeated
            half = self.smoothing // 2
            padded = torch.nn.functional.pad(correction[None], (half, half), mode="replicate")
            correction = torch.nn.functional.avg_pool1d(padded, self.smoothing, stride=1)[0]
        return (frames.T + correction).contiguous()

    def tensors(self, prefix: str = "frames.") -> dict[str, Tensor]:
        """The bank as float16 tensors for a safetensors file (see :meth:`from_tensors`)."""
        return {f"{prefix}twin": self.twin.half().contiguous(),
                f"{prefix}real": self.real.half().contiguous()}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Tensor], prefix: str = "frames.",
                     neighbours: int = NEIGHBOURS, smoothing: int = SMOOTHING
                     ) -> FrameBank | None:
        """The bank :meth:`tensors` wrote, or None when ``tensors`` hold none."""
        if f"{prefix}twin" not in tensors:
            return None
        return cls(tensors[f"{prefix}twin"].float(), tensors[f"{prefix}real"].float(), neighbours,
                   smoothing)


class _Outputs(nn.Module):
    """``model.outputs`` as a module call, so that functional_call can swap parameters."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.outputs(batch)


def frame_bank(checkpoint, params: Mapping[str, Tensor], examples: Sequence,
               neighbours: int = NEIGHBOURS, smoothing: int = SMOOTHING) -> FrameBank:
    """The bank of a voice: ``examples`` are its clips as model inputs
    (:func:`metatts.adapt.support_examples`: tokens, log-mel, F0, speaker NEW_SPEAKER) and
    ``params`` the voice's parameters (``speaker.new`` at least: the encoder's vector or an
    adapted voice's). Each clip is rendered teacher-forced with those parameters, pitch
    normalized by the statistics of all the clips, as adaptation does."""
    from metatts.data.batch import collate
    from metatts.data.pitch import voice_stats

    if not examples:
        raise ValueError("a frame bank needs at least one clip.")
    model = checkpoint.model
    device = next(model.parameters()).device
    f0 = [x.f0 for x in examples if x.f0 is not None]
    stats = voice_stats(torch.cat(f0)) if f0 else None
    overrides = {f"model.{k}": v.to(device) for k, v in params.items()}
    twins, reals = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for first in range(0, len(examples), CHUNK_CLIPS):
                batch = collate(examples[first:first + CHUNK_CLIPS])
                if stats is not None:
                    batch = replace(batch, pitch_stats=stats)
                batch = batch.to(device)
                out = torch.func.functional_call(_Outputs(model), overrides, (batch,),
                                                 strict=False)
                said = out.mel if out.mel_postnet is None else out.mel_postnet
                for i, n in enumerate(batch.mel_lengths.tolist()):
                    twins.append(said[i, :, :n].T.float().cpu())
                    reals.append(batch.mels[i, :, :n].T.float().cpu())
    finally:
        model.train(was_training)
    return FrameBank(torch.cat(twins), torch.cat(reals), neighbours, smoothing)
