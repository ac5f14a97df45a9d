"""A reference encoder: the mel frames of one or more clips of a voice -> one speaker vector.

After Meta-StyleSpeech's mel-style encoder (Min et al. 2021): a spectral stage (two position-wise
linear layers), a temporal stage (two residual gated convolutions), one residual self-attention
layer, and a projection, pooled over each clip's real frames; several clips are pooled again by
their mean, so the vector does not depend on the order of the clips. It is trained with the
acoustic model (see :mod:`metatts.model.fastspeech2`): on another clip of the same speaker than
the one reconstructed, pulled toward the speaker table's row and used in place of it for part of
the batch, so that a speaker's clips predict a vector that speaks other sentences in that voice.
Nothing here comes from a pretrained verification model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metatts.model.layers import SelfAttention, conv1d_time_major, sequence_mask

MEL_CENTRE, MEL_SCALE = -5.0, 2.5  # log-mel (about -11.5 .. 2) to roughly unit range


class GatedConv(nn.Module):
    """x + GLU(conv(x)): a residual gated convolution over time (kernel odd)."""

    def __init__(self, dim: int, kernel: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(dim, 2 * dim, kernel, padding=kernel // 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, T, C), mask (B, T) -> (B, T, C), zero at padding"""
        keep = mask[..., None].to(x.dtype)
        return (x + self.dropout(F.glu(conv1d_time_major(x * keep, self.conv), dim=-1))) * keep


class SpeakerEncoder(nn.Module):
    def __init__(self, n_mels: int, hidden: int, out_dim: int, heads: int = 2,
                 kernel: int = 5, dropout: float = 0.1):
        super().__init__()
        self.spectral = nn.Sequential(nn.Linear(n_mels, hidden), nn.Mish(), nn.Dropout(dropout),
                                      nn.Linear(hidden, hidden), nn.Mish())
        self.temporal = nn.ModuleList(GatedConv(hidden, kernel, dropout) for _ in range(2))
        self.attention = SelfAttention(hidden, heads, dropout)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, mels: Tensor, lengths: Tensor) -> Tensor:
        """mels (B, n_mels, T) log-mel, lengths (B,) real frames -> one vector per clip (B, out)"""
        mask = sequence_mask(lengths, mels.shape[-1])  # (B, T)
        keep = mask[..., None].to(mels.dtype)
        x = self.spectral((mels.transpose(1, 2) - MEL_CENTRE) / MEL_SCALE) * keep  # (B, T, H)
        for conv in self.temporal:
            x = conv(x, mask)
        x = self.norm(x + self.attention(x, mask)) * keep
        pooled = x.sum(1) / keep.sum(1).clamp(min=1)  # (B, H) mean over real frames
        return self.out(pooled)

    def pool_clips(self, mels: list[Tensor]) -> Tensor:
        """Clips of one voice, each (n_mels, T_i) -> (out,) the mean of their vectors."""
        if not mels:
            raise ValueError("encode at least one clip.")
        device = self.out.weight.device  # clips may still be where they were read (the CPU)
        mels = [m.to(device) for m in mels]
        lengths = torch.tensor([m.shape[-1] for m in mels], device=device)
        if int(lengths.min()) < 1:
            raise ValueError("every clip needs at least one mel frame.")
        padded = torch.zeros(len(mels), mels[0].shape[0], int(lengths.max()),
                             device=mels[0].device, dtype=mels[0].dtype)
        for i, m in enumerate(mels):
            padded[i, :, : m.shape[-1]] = m
        return self(padded, lengths).mean(0)
