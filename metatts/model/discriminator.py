"""A speaker-conditional mel discriminator against over-smoothing (after GANSpeech, Yang et al.
2021, and the projection discriminator of Miyato & Koyama 2018).

A decoder trained with an L1 loss predicts close to the conditional mean: its mels are smoother
than speech, and the fine spectral structure that tells one voice from another is what goes.
The discriminator sees windows of ``width`` frames of log-mel as an image (a patch classifier:
strided 2-D convolutions over bins and frames) and scores each patch; a projection term, the
inner product of its pooled features with a projection of the speaker vector the frames were
spoken with, makes the score conditional on the voice (real frames of speaker A scored with B's
vector are evidence against the pair). The generator's adversarial and feature-matching terms
live in :mod:`metatts.train.adversarial`; nothing here is a pretrained or judging model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metatts.model.speaker_encoder import MEL_CENTRE, MEL_SCALE


class MelDiscriminator(nn.Module):
    def __init__(self, n_mels: int, speaker_dim: int, channels: int = 32):
        super().__init__()
        c = channels
        # (in, out, stride over (bins, frames)); kernels 3x3, padding 1
        shapes = [(1, c, (2, 1)), (c, 2 * c, (2, 2)), (2 * c, 2 * c, (2, 2)),
                  (2 * c, 2 * c, (1, 1))]
        self.convs = nn.ModuleList(
            nn.utils.parametrizations.weight_norm(nn.Conv2d(i, o, 3, stride=s, padding=1))
            for i, o, s in shapes)
        self.out = nn.utils.parametrizations.weight_norm(nn.Conv2d(2 * c, 1, 3, padding=1))
        self.speaker = nn.Linear(speaker_dim, 2 * c, bias=False)  # the projection term
        self.n_mels = n_mels

    def forward(self, mels: Tensor, speaker: Tensor | None = None
                ) -> tuple[Tensor, list[Tensor]]:
        """mels (B, n_mels, W) log-mel windows, speaker (B, D) or None (unconditional) ->
        (scores (B, P): one per patch, the projection term added to each; the feature maps of
        every layer, for feature matching)."""
        if mels.dim() != 3 or mels.shape[1] != self.n_mels:
            raise ValueError(f"expected mel windows (B, {self.n_mels}, W), got "
                             f"{tuple(mels.shape)}.")
        x = ((mels - MEL_CENTRE) / MEL_SCALE)[:, None]  # (B, 1, n_mels, W)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            features.append(x)
        scores = self.out(x).flatten(1)  # (B, P)
        if speaker is not None:
            pooled = x.mean(dim=(2, 3))  # (B, C)
            scores = scores + (pooled * self.speaker(speaker)).sum(1, keepdim=True)
        return scores, features


def window_starts(lengths: Tensor, width: int, generator: torch.Generator | None = None
                  ) -> tuple[Tensor, Tensor]:
    """A random window of ``width`` frames inside each item's real frames: (items (K,) that
    have at least ``width`` frames, their start frames (K,))."""
    items = (lengths >= width).nonzero().flatten()
    room = (lengths[items] - width + 1).to(torch.float64)
    u = torch.rand(len(items), generator=generator, dtype=torch.float64)
    starts = (u * room).floor().to(torch.long).clamp(min=0)
    return items, starts


def crop(mels: Tensor, items: Tensor, starts: Tensor, width: int) -> Tensor:
    """(B, n_mels, T), items (K,), starts (K,) -> the windows (K, n_mels, width)."""
    index = starts.to(mels.device)[:, None] + torch.arange(width, device=mels.device)  # (K, W)
    picked = mels[items.to(mels.device)]  # (K, n_mels, T)
    return torch.gather(picked, 2, index[:, None, :].expand(-1, mels.shape[1], -1))


def generator_terms(critic: MelDiscriminator, real: Tensor, predicted: Tensor,
                    speaker: Tensor | None) -> tuple[Tensor, Tensor]:
    """The generator's terms for windows ``real`` and ``predicted`` (K, n_mels, W): (LSGAN, mean
    (D(predicted) - 1)^2; feature matching, the L1 distance between the critic's features of the
    two, mean over layers). Hold the critic's weights fixed beforehand if they must not learn."""
    with torch.no_grad():
        _, real_features = critic(real.detach(), speaker)
    score, fake_features = critic(predicted, speaker)
    fm = sum((f - r).abs().mean() for f, r in zip(fake_features, real_features))
    return ((score - 1) ** 2).mean(), fm / len(fake_features)


CRITIC_TERMS = ("critic_fm", "critic_adv")


def critic_terms(critic: MelDiscriminator, window: int, outputs: list, batches: list
                 ) -> dict[str, Tensor]:
    """The generator's terms against a fixed discriminator, for adaptation: ``outputs`` the
    :class:`~metatts.model.fastspeech2.ModelOutput` of each of ``batches`` (the parts of a
    support set). One random window per item long enough (global RNG), all parts together ->
    {"critic_fm": feature matching scaled to the windows' mean mel L1 (all windows weighted
    alike, whatever the parts), "critic_adv": mean
    (D(predicted) - 1)^2}. The discriminator's weights get no gradient."""
    real, fake, speakers = [], [], []
    for out, batch in zip(outputs, batches):
        items, starts = window_starts(batch.mel_lengths.cpu(), window)
        if len(items):
            real.append(crop(batch.mels, items, starts, window))
            fake.append(crop(out.spoken, items, starts, window))
            speakers.append(out.speaker_vector[items.to(out.speaker_vector.device)].detach())
    if not real:
        raise ValueError(f"no support clip is {window} frames long; the critic terms need "
                         "longer clips (or leave them out of the inner loop's terms).")
    real, fake = torch.cat(real), torch.cat(fake)
    adv, fm = generator_terms(critic, real, fake, torch.cat(speakers))
    # over every window at once, so that how the support splits into parts changes nothing
    mel_l1 = (fake.detach() - real).abs().mean()
    scale = mel_l1 / fm.detach().clamp(min=1e-8)
    return {"critic_fm": fm * scale, "critic_adv": adv}
