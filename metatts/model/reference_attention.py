"""Reference attention: the decoder's frames attend to the mel frames of the voice's own clips.

A speaker vector is a bottleneck: the decoder can only speak what some vector of the training
voices' span renders, and the test voices lie outside it (the best vector fitted to a test voice
reaches about half of the similarity that adapting the decoder does; docs/experiments.md). Here
the decoder also reads the reference clips themselves, frame by frame (after Attentron, Choi et
al. 2020: fine-grained style by attention over reference frames): each decoder frame queries the
reference frames and adds what it finds, so that what a sound is like in *this* voice can be
copied rather than rebuilt from a vector.

Two of these sit around the decoder (its input frames, and its output before the mel
projection). Each starts as the identity (zero-initialized output), so a model without them
warm-starts exactly; in training a ``reference_dropout`` share of the items is spoken without
references, so the vector path alone keeps working (adaptation's support batches carry none).
Nothing here comes from a pretrained verification model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from metatts.model.layers import attend, sequence_mask
from metatts.model.speaker_encoder import MEL_CENTRE, MEL_SCALE, GatedConv


class ReferenceAttention(nn.Module):
    def __init__(self, n_mels: int, dim: int, heads: int, dropout: float, kernel: int = 5):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.prenet = nn.Sequential(nn.Linear(n_mels, dim), nn.Mish(), nn.Linear(dim, dim))
        self.context = GatedConv(dim, kernel, dropout)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)  # the identity until trained
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, mels: Tensor, lengths: Tensor, present: Tensor) -> Tensor:
        """x (B, T, C) frames; mels (B, n_mels, R) reference log-mels with lengths (B,) real
        frames (at least 1); present (B,) bool: items that read their references (the others
        are returned as they are) -> (B, T, C)."""
        B, T, C = x.shape
        R, h = mels.shape[-1], self.heads
        mask = sequence_mask(lengths.clamp(min=1), R)  # (B, R)
        keep = mask[..., None].to(x.dtype)
        ref = self.prenet((mels.transpose(1, 2).to(x.dtype) - MEL_CENTRE) / MEL_SCALE) * keep
        ref = self.context(ref, mask)
        k, v = self.key_value(ref).view(B, R, 2, h, C // h).permute(2, 0, 3, 1, 4)
        q = self.query(self.norm(x)).view(B, T, h, C // h).transpose(1, 2)  # (B, h, T, C/h)
        y = attend(q, k, v, mask, self.dropout if self.training else 0.0)
        y = self.out(y.transpose(1, 2).reshape(B, T, C))
        return x + y * present[:, None, None].to(y.dtype)


def stack_references(mels: list[Tensor], max_frames: int) -> tuple[Tensor, Tensor]:
    """Clips of one voice, each (n_mels, T_i) -> their frames side by side as one reference
    (1, n_mels, R) and its length (1,), at most ``max_frames`` frames: each clip gives an equal
    share from its middle when they do not all fit."""
    if not mels:
        raise ValueError("give at least one reference clip.")
    total = sum(m.shape[-1] for m in mels)
    if total > max_frames:
        share = max(1, max_frames // len(mels))
        mels = [m[:, max(0, (m.shape[-1] - share) // 2):][:, :share] for m in mels]
    joined = torch.cat(mels, dim=-1)
    return joined[None], torch.tensor([joined.shape[-1]], device=joined.device)
