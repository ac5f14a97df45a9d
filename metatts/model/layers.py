"""Transformer building blocks: masks, positions, (speaker-conditional) layer norm, FFT blocks.

Everything here is functional-transform friendly (``torch.func.grad``/``functional_call``): no
in-place writes to parameters or activations, no numpy, no buffers updated during the forward.
Sequences are (B, T, C) with a mask (B, T) that is True at real positions.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sequence_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """(B,) lengths -> (B, max_len) bool, True at positions < length."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device) < lengths[:, None]


def sinusoid_positions(length: int, dim: int, device: torch.device | str = "cpu") -> Tensor:
    """Transformer sinusoidal position encodings. (length, dim)"""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32)
                     * (-math.log(10000.0) / dim))
    angles = pos * freq  # (T, dim/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)[:, :dim]


class ConditionalLayerNorm(nn.Module):
    """LayerNorm whose scale and bias are predicted from a speaker vector (AdaSpeech).

    At initialization scale = 1 and bias = 0 for every speaker; adapting a voice then only needs
    the two small projections (2 * (speaker_dim + 1) * dim numbers per norm).
    """

    def __init__(self, dim: int, speaker_dim: int, eps: float = 1e-5):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.scale = nn.Linear(speaker_dim, dim)
        self.shift = nn.Linear(speaker_dim, dim)
        nn.init.zeros_(self.scale.weight)
        nn.init.ones_(self.scale.bias)
        nn.init.zeros_(self.shift.weight)
        nn.init.zeros_(self.shift.bias)

    def forward(self, x: Tensor, speaker: Tensor) -> Tensor:
        """x (B, T, dim), speaker (B, speaker_dim) -> (B, T, dim)"""
        x = F.layer_norm(x, (self.dim,), eps=self.eps)
        return x * self.scale(speaker)[:, None] + self.shift(speaker)[:, None]


class LayerNorm(nn.LayerNorm):
    """Plain LayerNorm with the conditional norm's call signature (the speaker is ignored)."""

    def forward(self, x: Tensor, speaker: Tensor | None = None) -> Tensor:
        return super().forward(x)


_HIGHER_ORDER: contextvars.ContextVar[bool] = contextvars.ContextVar("higher_order", default=False)


@contextlib.contextmanager
def higher_order() -> Iterator[None]:
    """Within this block the model's forward stays differentiable twice: attention is written out
    and the aligner's loss runs as a loop (second-order MAML's inner loop enters it)."""
    token = _HIGHER_ORDER.set(True)
    try:
        yield
    finally:
        _HIGHER_ORDER.reset(token)


def needs_higher_order(x: Tensor) -> bool:
    """Whether a forward on ``x`` must be differentiable more than once: inside
    :func:`higher_order`, or inside nested ``torch.func`` transforms (e.g. ``grad`` of ``grad``).
    A single transform (first-order adaptation's ``grad``) differentiates once."""
    return _HIGHER_ORDER.get() or torch._C._functorch.maybe_get_level(x) >= 2


def fused_attention(q: Tensor) -> bool:
    """Whether attention on ``q`` uses PyTorch's fused kernel: everywhere except where a gradient
    of a gradient is needed (see :func:`needs_higher_order` and :class:`SelfAttention`), and in
    bfloat16 on a CPU, where the fused kernel is the slower one (2 heads of 64 at T = 400,
    batch 2, 2 cores: forward + backward 4.4 ms fused, 2.7 ms written out; forward alone 1.3 vs
    1.0 ms; in float32 the fused kernel wins, 4.1 vs 5.4 ms)."""
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        return False
    return not needs_higher_order(q)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, T, C), mask (B, T) -> (B, T, C); padded keys are never attended to."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        y = attend(q, k, v, mask, self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


def attend(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor, dropout: float = 0.0) -> Tensor:
    """Scaled dot-product attention: q (B, heads, T, d), k and v (B, heads, S, d), key_mask
    (B, S) True at real keys (padded keys are never attended to) -> (B, heads, T, d)."""
    if fused_attention(q):
        # PyTorch's fused kernel: the same numbers, faster in float32 (forward + backward at
        # T = 400 on 2 cores), but differentiable once only
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :],
                                              dropout_p=dropout)
    # written out where a gradient of a gradient is needed (second-order MAML's inner loop: the
    # fused kernel is differentiable once only) and in bfloat16 on a CPU (faster there)
    # one baddbmm scales the products and adds the key mask (-inf at padded keys) in the same
    # pass, where a product, a scaling and a masked copy of the (T, S) scores each went over
    # them forward and backward: 5 clips x 20 steps 3-5 % faster in bfloat16 on 2 cores (paired
    # rounds in one process, 2026-12-07; docs/experiments.md, "Faster steps")
    B, H, T, d = q.shape
    S = k.shape[2]
    bias = torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device).masked_fill_(
        ~key_mask, float("-inf"))[:, None, None, :].expand(B, H, 1, S).reshape(B * H, 1, S)
    scores = torch.baddbmm(bias, q.reshape(B * H, T, d), k.reshape(B * H, S, d).transpose(1, 2),
                           alpha=d ** -0.5)  # (B * heads, T, S)
    probs = F.dropout(scores.softmax(-1), dropout, dropout > 0)
    return (probs @ v.reshape(B * H, S, d)).view(B, H, T, d)


# the CPU's vector extension as PyTorch dispatches it ("AVX512", "AVX2", "DEFAULT", ...)
_NATIVE_CONV = torch.backends.cpu.get_cpu_capability() == "AVX512"


def conv1d_time_major(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """``conv`` (odd kernel, "same" zero padding, stride 1) applied to x (B, T, C_in) ->
    (B, T, C_out), computed as one matrix product over the kernel's shifted copies of x.

    Same numbers as ``conv(x.transpose(1, 2)).transpose(1, 2)`` and the same parameters. On CPUs
    with AVX but no AVX-512, PyTorch's convolution backward took 45 % of a training step; the
    FFN's kernel-3 convolution forward + backward measured 190 ms as conv1d, 120 ms so. With
    AVX-512 (and on a GPU) the library's convolution is the faster one (2-3x here, at T = 953,
    128 -> 512 channels, with and without weight gradients), so it is used there."""
    k = conv.kernel_size[0]
    if k == 1:
        return F.linear(x, conv.weight[..., 0], conv.bias)
    if x.device.type != "cpu" or _NATIVE_CONV:
        return conv(x.transpose(1, 2)).transpose(1, 2)
    T, pad = x.shape[1], k // 2
    padded = F.pad(x, (0, 0, pad, pad))  # (B, T + k - 1, C_in)
    shifted = torch.cat([padded[:, i: i + T] for i in range(k)], dim=-1)  # (B, T, k * C_in)
    weight = conv.weight.permute(0, 2, 1).reshape(conv.out_channels, -1)  # (C_out, k * C_in)
    return F.linear(shifted, weight, conv.bias)


class ConvFeedForward(nn.Module):
    """FastSpeech's position-wise feed-forward: conv(kernel) -> ReLU -> conv(1)."""

    def __init__(self, dim: int, hidden: int, kernel: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv1d(dim, hidden, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(hidden, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, T, C) -> (B, T, C); its input is zeroed at padded positions first, so that the
        kernel sees zeros past a sequence's end whatever the block left there."""
        h = F.relu(conv1d_time_major(x * mask[..., None], self.conv1))  # (B, T, hidden)
        return conv1d_time_major(self.dropout(h), self.conv2)


class LowRankAdapter(nn.Module):
    """Residual bottleneck x + up(down(x)) of rank ``rank`` (Houlsby adapters / LoRA-style low-rank
    update). ``up`` starts at zero, so a model with adapters computes exactly what it computed
    without them until a voice (or meta-learning) moves them; pretraining leaves them at zero.
    Each adds 2 * dim * rank numbers to an adapted voice."""

    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim, bias=False)
        nn.init.normal_(self.down.weight, std=dim ** -0.5)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.up(self.down(x))


class FFTBlock(nn.Module):
    """Feed-forward Transformer block (post-norm, as in FastSpeech 2), with an optional low-rank
    residual adapter on its output (``adapter_rank`` > 0)."""

    def __init__(self, dim: int, heads: int, ffn_hidden: int, kernel: int, dropout: float,
                 speaker_dim: int | None, adapter_rank: int = 0):
        super().__init__()
        self.attention = SelfAttention(dim, heads, dropout)
        self.ffn = ConvFeedForward(dim, ffn_hidden, kernel, dropout)
        norm = (lambda: ConditionalLayerNorm(dim, speaker_dim)) if speaker_dim else (
            lambda: LayerNorm(dim))
        self.norm1, self.norm2 = norm(), norm()
        self.dropout = nn.Dropout(dropout)
        self.adapter = LowRankAdapter(dim, adapter_rank) if adapter_rank > 0 else None

    def forward(self, x: Tensor, mask: Tensor, speaker: Tensor | None = None) -> Tensor:
        """x (B, T, C), mask (B, T) -> (B, T, C), real at masked-in positions only: padded
        positions hold finite values that no real position reads (attention masks padded keys,
        the FFN zeroes its input there), and :class:`FFTStack` zeroes them once at its end.
        Masking after every sublayer gave the same numbers, one more pass over the activations
        each way (5 clips x 20 steps 2.5 % faster without, 2026-12-07; docs/experiments.md)."""
        x = self.norm1(x + self.dropout(self.attention(x, mask)), speaker)
        x = self.norm2(x + self.dropout(self.ffn(x, mask)), speaker)
        return x if self.adapter is None else self.adapter(x)


class FFTStack(nn.Module):
    """Positions + a stack of FFT blocks; speaker-conditional norms when ``speaker_dim`` is set."""

    def __init__(self, layers: int, dim: int, heads: int, ffn_hidden: int, kernel: int,
                 dropout: float, speaker_dim: int | None = None, adapter_rank: int = 0):
        super().__init__()
        self.blocks = nn.ModuleList(
            FFTBlock(dim, heads, ffn_hidden, kernel, dropout, speaker_dim, adapter_rank)
            for _ in range(layers))

    def forward(self, x: Tensor, mask: Tensor, speaker: Tensor | None = None) -> Tensor:
        """x (B, T, C), mask (B, T), speaker (B, speaker_dim) or None -> (B, T, C)"""
        x = (x + sinusoid_positions(x.shape[1], x.shape[2], x.device)) * mask[..., None]
        for block in self.blocks:
            x = block(x, mask, speaker)
        return x * mask[..., None]  # zero at padded positions (the blocks leave them unread)


class PostNet(nn.Module):
    """Residual conv refinement of the mel (Tacotron 2 style, LayerNorm instead of BatchNorm so
    nothing updates running statistics inside a functional call)."""

    def __init__(self, n_mels: int, channels: int, kernel: int, layers: int, dropout: float):
        super().__init__()
        sizes = [n_mels] + [channels] * (layers - 1) + [n_mels]
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, kernel, padding=kernel // 2) for a, b in zip(sizes, sizes[1:]))
        self.norms = nn.ModuleList(LayerNorm(channels) for _ in range(layers - 1))
        self.dropout = nn.Dropout(dropout)

    def forward(self, mel: Tensor, mask: Tensor) -> Tensor:
        """mel (B, T, n_mels) -> residual (B, T, n_mels)"""
        keep = mask[..., None].to(mel.dtype)
        x = mel * keep
        for i, conv in enumerate(self.convs):
            x = conv(x.transpose(1, 2)).transpose(1, 2)
            if i < len(self.norms):
                x = self.dropout(torch.tanh(self.norms[i](x))) * keep
        return x * keep
