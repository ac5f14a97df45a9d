"""Unsupervised text-to-mel alignment (Badlani et al. 2022, "One TTS Alignment to Rule Them All").

A conv text encoder and a conv mel encoder meet in an L2-distance soft attention with a
beta-binomial log-prior (SpeechBrain's :class:`AlignmentNetwork`). It is trained by the forward-sum
loss, as in RAD-TTS: CTC of the targets 1..N over per-frame distributions of [blank, tokens], the
blank (a fixed logit of -1) taking frames no token explains; without it a few tokens (spaces) learn
to soak up every such frame and the alignment collapses. Monotonic alignment search (MAS) over the
soft attention picks the most likely path that gives each token at least one frame: the hard
alignment that sets the durations; a binarization loss pulls the soft attention toward it.

Both dynamic programs are written in torch (a loop over frames, vectorized over batch and tokens):
the forward sum must be differentiable twice for second-order MAML, which PyTorch's CTC loss is
not ("derivative for aten::_ctc_loss_backward is not implemented"), and MAS must run on tensors
that ``torch.func`` transforms wrap, which numpy (SpeechBrain's ``maximum_path_numpy``) cannot read.
Attention tensors are (B, T_mel, N_tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metatts._torchaudio import import_speechbrain
from metatts.model.layers import needs_higher_order

NEG = -1e9  # log of "impossible"; finite so that gradients stay finite


@dataclass(frozen=True)
class Alignment:
    """The aligner's output; ``logits``/``soft``/``log_soft`` are None for an alignment given as
    fixed durations (then there is nothing to train the aligner with)."""

    logits: Tensor | None  # (B, T, N) log attention before normalization (L2 score + log prior)
    soft: Tensor | None  # (B, T, N) attention, each real frame's row sums to 1 over real tokens
    log_soft: Tensor | None  # (B, T, N) its log, 0 outside the real (frame, token) rectangle
    hard: Tensor  # (B, T, N) 0/1 monotonic path, exactly one token per real frame (no gradient)
    durations: Tensor  # (B, N) int64 frames per token; sums to the mel length, >= 1 per real token


def _alignment_network():
    import_speechbrain()
    from speechbrain.lobes.models.FastSpeech2 import AlignmentNetwork

    return AlignmentNetwork


class Aligner(nn.Module):
    """Soft attention between token embeddings and mel frames, plus its MAS hard path."""

    def __init__(self, n_mels: int, token_dim: int, channels: int, temperature: float,
                 prior_scale: float):
        super().__init__()
        self.prior_scale = prior_scale
        self.network = _alignment_network()(
            in_query_channels=n_mels, in_key_channels=token_dim, attn_channels=channels,
            temperature=temperature)
        # how far past an end the convolutions read (see _scores), once
        self._reach = (_reach(self.network.query_layer), _reach(self.network.key_layer))

    def forward(self, tokens: Tensor, mels: Tensor, token_lengths: Tensor,
                mel_lengths: Tensor) -> Alignment:
        """tokens (B, N, token_dim) embeddings, mels (B, n_mels, T) -> :class:`Alignment`"""
        B, N, _ = tokens.shape
        T = mels.shape[-1]
        valid = _rectangle(token_lengths, mel_lengths, N, T)  # (B, T, N)
        with torch.no_grad():
            prior = beta_binomial_prior(token_lengths, mel_lengths, N, T, self.prior_scale)
        token_mask = torch.arange(N, device=tokens.device) < token_lengths[:, None]  # (B, N)
        frame_mask = torch.arange(T, device=mels.device) < mel_lengths[:, None]  # (B, T)
        # zero past each item's end, as :meth:`_scores` makes the longest item see too: a clip
        # aligns alike alone or in a batch
        mels = mels * frame_mask[:, None, :]
        keys = (tokens * token_mask[..., None]).transpose(1, 2)  # (B, token_dim, N)
        logits = self._scores(mels, keys, token_mask, prior)  # (B, T, N)
        logits = torch.where(valid, logits, NEG)
        log_soft = torch.where(valid, torch.log_softmax(logits, dim=-1), 0.0)
        soft = torch.where(valid, log_soft.exp(), 0.0)
        hard = monotonic_alignment_search(log_soft, token_lengths, mel_lengths)
        return Alignment(logits, soft, log_soft, hard, hard.sum(1).long())


    def _scores(self, mels: Tensor, keys: Tensor, token_mask: Tensor, prior: Tensor) -> Tensor:
        """SpeechBrain's AlignmentNetwork scores with its own layers: -temperature * squared L2
        distance between projected frames and tokens, log-softmax over the real tokens, plus the
        log prior. The distance is expanded as |q|^2 + |k|^2 - 2 q.k (one batched matrix product)
        instead of materializing the (B, C, T, N) difference tensor: same values, a fraction of
        the time and memory; and zeros past every item's end where SpeechBrain's own forward
        reflects the longest item (below). -> (B, T, N)"""
        net = self.network
        # SpeechBrain's convolutions pad by reflection ("same", padding_mode "reflect"): past its
        # end an item read its own mirrored frames where it was the longest of its batch (or
        # alone) and the batch's zero padding otherwise, so the durations of a clip's last
        # tokens depended on the clips it was aligned with (2 of 46 tokens of a 2.1 s clip,
        # alone and beside longer ones; 2026-12-07). Zero columns past the longest, as wide as
        # the layers reach, give every item zeros there.
        T, N = mels.shape[-1], keys.shape[-1]
        queries = net.query_layer(F.pad(mels, (0, self._reach[0])))[..., :T]  # (B, C, T)
        keys = net.key_layer(F.pad(keys, (0, self._reach[1])))[..., :N]  # (B, C, N)
        distance = ((queries ** 2).sum(1)[:, :, None] + (keys ** 2).sum(1)[:, None, :]
                    - 2 * queries.transpose(1, 2) @ keys)  # (B, T, N)
        scores = torch.where(token_mask[:, None, :], -net.temperature * distance, NEG)
        return torch.log_softmax(scores, dim=-1) + torch.log(prior + 1e-8)


def _reach(layers: nn.Module) -> int:
    """How many positions past a sequence's end a stack of stride-1 convolutions reads."""
    convs = [c for c in layers.modules() if isinstance(c, nn.Conv1d)]
    if any(c.stride[0] != 1 for c in convs):
        raise ValueError("the aligner's convolutions must have stride 1.")
    # SpeechBrain's "same" padding: floor(dilation * (kernel - 1) / 2) on each side
    return sum(c.dilation[0] * (c.kernel_size[0] - 1) // 2 for c in convs)


def _rectangle(token_lengths: Tensor, mel_lengths: Tensor, N: int, T: int) -> Tensor:
    """(B, T, N) bool, True at real (frame, token) pairs."""
    frames = torch.arange(T, device=mel_lengths.device)[None, :, None] < mel_lengths[:, None, None]
    tokens = (torch.arange(N, device=token_lengths.device)[None, None, :]
              < token_lengths[:, None, None])
    return frames & tokens


def beta_binomial_prior(token_lengths: Tensor, mel_lengths: Tensor, max_tokens: int,
                        max_frames: int, scale: float = 1.0) -> Tensor:
    """Badlani et al.'s alignment prior: frame t of M favours token k of N by
    BetaBinomial(k; N - 1, scale * t, scale * (M - t + 1)). (B, T, N), zero outside real pairs."""
    dev = token_lengths.device
    n = (token_lengths - 1).float()[:, None, None]  # (B, 1, 1)
    m = mel_lengths.float()[:, None, None]
    k = torch.arange(max_tokens, device=dev, dtype=torch.float32)[None, None, :]  # (1, 1, N)
    t = torch.arange(1, max_frames + 1, device=dev, dtype=torch.float32)[None, :, None]  # (1, T, 1)
    valid = (k <= n) & (t <= m)
    k = torch.minimum(k, n)
    a, b = scale * t, (scale * (m - t + 1)).clamp(min=1e-3)  # clamp keeps lgamma finite off-grid
    lg = torch.lgamma
    log_pmf = (lg(n + 1) - lg(k + 1) - lg(n - k + 1)
               + lg(k + a) + lg(n - k + b) - lg(n + a + b)
               - lg(a) - lg(b) + lg(a + b))
    return torch.where(valid, log_pmf.exp(), 0.0)


def forward_sum_loss(logits: Tensor, token_lengths: Tensor, mel_lengths: Tensor,
                     blank_logit: float = -1.0, higher_order: bool | None = None) -> Tensor:
    """RAD-TTS's forward-sum loss: the CTC loss of targets 1..N when frame t emits from
    log_softmax([blank_logit, logits[t]]), divided by N, mean over the batch (as
    ``torch.nn.CTCLoss``'s "mean"). logits (B, T, N). Scalar.

    ``higher_order``: True runs the forward sum as a torch loop over frames, differentiable to any
    order (second-order MAML); False uses PyTorch's CTC kernel: the same value and gradient from
    one compiled kernel instead of a Python loop over frames, but differentiable once only. None
    (default) picks the loop exactly where a gradient of a gradient is needed
    (:func:`metatts.model.layers.needs_higher_order`) and the kernel otherwise (pretraining,
    first-order meta-learning and adaptation)."""
    B, T, N = logits.shape
    real = torch.arange(N, device=logits.device) < token_lengths[:, None]  # (B, N)
    logits = torch.where(real[:, None, :], logits, NEG)
    scores = torch.cat([torch.full_like(logits[..., :1], blank_logit), logits], -1)
    log_probs = scores.log_softmax(-1)  # (B, T, 1 + N)
    if higher_order is None:
        higher_order = needs_higher_order(logits)
    if not higher_order:
        targets = torch.arange(1, N + 1, device=logits.device).expand(B, N)
        return F.ctc_loss(log_probs.transpose(0, 1), targets, mel_lengths, token_lengths,
                          blank=0, reduction="mean", zero_infinity=False)
    blank, tokens = log_probs[..., :1], log_probs[..., 1:]
    # states: blank, token 0, blank, token 1, ..., token N-1, blank
    emit = torch.cat([torch.stack([blank.expand(B, T, N), tokens], -1).flatten(2), blank], -1)
    state = torch.arange(2 * N + 1, device=logits.device)
    skip = (state % 2 == 1) & (state >= 3)  # a token may follow the previous token directly
    rows = emit.unbind(1)  # T x (B, 2N + 1)
    alpha = torch.where(state < 2, rows[0], NEG)
    alphas = [alpha]
    for t in range(1, T):
        stay, step = alpha, F.pad(alpha[:, :-1], (1, 0), value=NEG)
        jump = torch.where(skip, F.pad(alpha[:, :-2], (2, 0), value=NEG), NEG)
        # logsumexp, not logaddexp: the latter's double backward is NaN for far-apart inputs
        alpha = torch.logsumexp(torch.stack([stay, step, jump]), dim=0) + rows[t]
        alphas.append(alpha)
    final = torch.stack(alphas, 1)[torch.arange(B), mel_lengths - 1]  # (B, 2N + 1)
    ends = torch.stack([2 * token_lengths, 2 * token_lengths - 1], 1)  # last blank, last token
    log_likelihood = torch.logsumexp(final.gather(1, ends), dim=1)  # (B,)
    return (-log_likelihood / token_lengths.to(final.dtype)).mean()


@torch.no_grad()
def monotonic_alignment_search(log_soft: Tensor, token_lengths: Tensor,
                               mel_lengths: Tensor) -> Tensor:
    """The most likely monotonic path (Viterbi over the same paths as the forward sum).
    log_soft (B, T, N) -> (B, T, N) 0/1, with one token per real frame and >= 1 frame per token.
    Needs mel_length >= token_length for every item."""
    B, T, N = log_soft.shape
    if bool((mel_lengths < token_lengths).any()):
        raise ValueError("monotonic alignment needs at least as many mel frames as tokens; "
                         f"got mel lengths {mel_lengths.tolist()} for token lengths "
                         f"{token_lengths.tolist()}.")
    rows = torch.where(_rectangle(token_lengths, mel_lengths, N, T), log_soft.detach(),
                       NEG).unbind(1)
    first = torch.arange(N, device=log_soft.device) == 0
    value = torch.where(first, rows[0], NEG)  # (B, N) best score of a path ending at token
    moved_from = []  # per frame t >= 1: (B, N) True where the best path came from token - 1
    for t in range(1, T):
        moved = F.pad(value[:, :-1], (1, 0), value=NEG)
        moved_from.append(moved > value)
        value = torch.maximum(value, moved) + rows[t]
    index = token_lengths - 1  # (B,) token on the path at frame t, walking back from the end
    path = []
    for t in range(T - 1, -1, -1):
        active = t < mel_lengths
        path.append(F.one_hot(index, N) * active[:, None])
        if t > 0:
            came = moved_from[t - 1].gather(1, index[:, None])[:, 0]
            index = index - (active & came).long()
    return torch.stack(path[::-1], dim=1).to(log_soft.dtype)  # (B, T, N)


def binarization_loss(hard: Tensor, log_soft: Tensor) -> Tensor:
    """-mean log soft attention on the hard path's cells. Scalar."""
    return -(hard * log_soft).sum() / hard.sum()


def expand_tokens(states: Tensor, durations: Tensor, frames: int) -> Tensor:
    """Length regulation: token states (B, N, H) repeated by ``durations`` (B, N) into (B, frames,
    H), zeros past an item's total. The same as ``durations_to_alignment(durations, frames) @
    states`` (a sum of one term per frame), as a gather: O(T H) instead of O(T N H), and its
    backward a scatter-add instead of a second batched matrix product."""
    ends = durations.cumsum(dim=1)  # (B, N)
    t = torch.arange(frames, device=durations.device).expand(len(durations), frames).contiguous()
    token = torch.searchsorted(ends, t, right=True)  # (B, T): the token each frame belongs to
    inside = token < durations.shape[1]
    index = token.clamp(max=durations.shape[1] - 1)[..., None].expand(-1, -1, states.shape[-1])
    return states.gather(1, index) * inside[..., None].to(states.dtype)


def durations_to_alignment(durations: Tensor, max_frames: int | None = None) -> Tensor:
    """(B, N) integer frames per token -> (B, T, N) 0/1 path (length regulation as a matrix).
    Frames past an item's total are all-zero rows."""
    ends = durations.cumsum(dim=1)  # (B, N)
    T = int(ends[:, -1].max()) if max_frames is None else max_frames
    frames = torch.arange(T, device=durations.device)[None, :, None]  # (1, T, 1)
    starts = ends - durations
    return ((frames >= starts[:, None, :]) & (frames < ends[:, None, :])).float()
