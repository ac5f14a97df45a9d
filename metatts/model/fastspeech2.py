"""The multi-speaker acoustic model: FastSpeech 2 with a jointly learned aligner and
speaker-conditional layer norms (AdaSpeech), built to be adapted to a new voice.

Calling the model on a :class:`~metatts.data.Batch` returns its training loss (a
:class:`LossOutput`), so ``DistributedDataParallel``, ``torch.func.functional_call(model, params,
(batch,))`` and ``torch.func.grad`` all see one pure function of (parameters, batch). Hard
alignments are computed without gradient from the detached attention; nothing writes into a
parameter or buffer during the forward.

A new voice: speaker index :data:`NEW_SPEAKER` (-1) selects the parameter ``speaker.new`` instead
of a row of the speaker table. Adaptation passes a value for it (and for any other parameters of a
group from :meth:`FastSpeech2.parameter_groups`) through ``functional_call``; a voice is nothing
but that dict of tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metatts.audio import LOG_CLAMP
from metatts.model.aligner import Aligner, Alignment, durations_to_alignment
# GROUPS (re-exported here): the names parameter_groups() returns, each containing the one before
from metatts.model.config import GROUPS, LossConfig, ModelConfig  # noqa: F401
from metatts.model.layers import ConditionalLayerNorm, FFTStack, PostNet, sequence_mask
from metatts.model.losses import LossOutput, acoustic_loss
from metatts.model.variance import (VarianceAdaptor, frame_energy, predicted_durations,
                                    token_average)

NEW_SPEAKER = -1  # speaker index that selects the adaptable vector ``speaker.new``


class SpeakerTable(nn.Module):
    """One learned vector per training speaker (``table``), plus ``new``: the starting point of a
    voice being adapted, used for index NEW_SPEAKER. Pretraining never uses ``new``; it is set to
    the mean of the table by :meth:`reset_new` (meta-learning may learn it instead)."""

    def __init__(self, n_speakers: int, dim: int):
        super().__init__()
        self.table = nn.Embedding(n_speakers, dim)
        nn.init.normal_(self.table.weight, std=0.3)
        self.new = nn.Parameter(torch.zeros(dim))

    def forward(self, speakers: Tensor) -> Tensor:
        """(B,) int64 indices (NEW_SPEAKER allowed) -> (B, dim)"""
        rows = self.table(speakers.clamp(min=0))
        return torch.where((speakers == NEW_SPEAKER)[:, None], self.new.expand_as(rows), rows)

    @torch.no_grad()
    def reset_new(self) -> None:
        self.new.copy_(self.table.weight.mean(0))


@dataclass(frozen=True)
class ModelOutput:
    """Teacher-forced outputs for a batch (durations and energy taken from the alignment)."""

    mel: Tensor  # (B, n_mels, T) decoder output
    mel_postnet: Tensor | None  # (B, n_mels, T) after the postnet, None without one
    log_duration: Tensor  # (B, N) predicted log(1 + frames)
    energy: Tensor | None  # (B, N) predicted
    energy_target: Tensor | None  # (B, N) from the mel over the hard alignment
    alignment: Alignment


@dataclass(frozen=True)
class Prediction:
    """Free-running synthesis output."""

    mel: Tensor  # (B, n_mels, T), frames past mel_lengths hold log(LOG_CLAMP) (silence)
    mel_lengths: Tensor  # (B,) int64
    durations: Tensor  # (B, N) int64 frames per token


class FastSpeech2(nn.Module):
    def __init__(self, config: ModelConfig, loss: LossConfig = LossConfig()):
        super().__init__()
        if config.n_symbols < 2 or config.n_speakers < 1:
            raise ValueError("model config needs n_symbols >= 2 and n_speakers >= 1 (set them "
                             f"from the data); got {config.n_symbols} and {config.n_speakers}.")
        c = self.config = config
        self.loss_config = loss
        self.token_embedding = nn.Embedding(c.n_symbols, c.hidden)
        nn.init.normal_(self.token_embedding.weight, std=c.hidden ** -0.5)
        self.encoder = FFTStack(c.encoder_layers, c.hidden, c.heads, c.ffn_hidden, c.ffn_kernel,
                                c.dropout)
        self.speaker = SpeakerTable(c.n_speakers, c.speaker_dim)
        self.speaker_proj = nn.Linear(c.speaker_dim, c.hidden)
        self.aligner = Aligner(c.n_mels, c.hidden, c.aligner_channels, c.aligner_temperature,
                               c.prior_scale)
        self.variance = VarianceAdaptor(c.hidden, c.variance_hidden, c.variance_kernel,
                                        c.variance_dropout, c.energy)
        self.decoder = FFTStack(c.decoder_layers, c.hidden, c.heads, c.ffn_hidden, c.ffn_kernel,
                                c.dropout, speaker_dim=c.speaker_dim)
        self.mel_out = nn.Linear(c.hidden, c.n_mels)
        self.postnet = (PostNet(c.n_mels, c.postnet_channels, c.postnet_kernel, c.postnet_layers,
                                c.dropout) if c.postnet_layers > 0 else None)

    # -- shared pieces ---------------------------------------------------------------------------
    def _encode(self, tokens: Tensor, token_lengths: Tensor, speakers: Tensor):
        """-> token states (B, N, H), token mask (B, N), speaker vectors (B, D), embeddings"""
        if int(token_lengths.min()) < 1:
            raise ValueError("every item needs at least one token.")
        if int(speakers.max()) >= self.config.n_speakers or int(speakers.min()) < NEW_SPEAKER:
            raise ValueError(f"speaker indices must be in [0, {self.config.n_speakers}) or "
                             f"NEW_SPEAKER ({NEW_SPEAKER}); got {speakers.tolist()}.")
        mask = sequence_mask(token_lengths, tokens.shape[1])
        embedded = self.token_embedding(tokens) * mask[..., None]  # (B, N, H)
        spk = self.speaker(speakers)  # (B, D)
        x = self.encoder(embedded, mask) + self.speaker_proj(spk)[:, None] * mask[..., None]
        return x, mask, spk, embedded

    def _decode(self, frames: Tensor, frame_mask: Tensor, spk: Tensor):
        """frames (B, T, H) -> decoder mel and postnet mel, each (B, n_mels, T) or None"""
        mel = self.mel_out(self.decoder(frames, frame_mask, spk))  # (B, T, n_mels)
        post = None if self.postnet is None else mel + self.postnet(mel, frame_mask)
        return mel.transpose(1, 2), None if post is None else post.transpose(1, 2)

    # -- training --------------------------------------------------------------------------------
    def outputs(self, batch) -> ModelOutput:
        """Teacher-forced forward pass over a padded :class:`~metatts.data.Batch`."""
        if batch.mels.shape[1] != self.config.n_mels:
            raise ValueError(f"expected mels (B, {self.config.n_mels}, T), got "
                             f"{tuple(batch.mels.shape)}.")
        x, mask, spk, embedded = self._encode(batch.tokens, batch.token_lengths, batch.speakers)
        if getattr(batch, "durations", None) is None:
            alignment = self.aligner(embedded, batch.mels, batch.token_lengths, batch.mel_lengths)
        else:  # fixed beforehand (see align()): the aligner is skipped
            hard = durations_to_alignment(batch.durations, batch.mels.shape[-1])
            alignment = Alignment(None, None, None, hard, batch.durations)
        energy_target = None
        if self.variance.energy is not None:
            energy_target = token_average(frame_energy(batch.mels), alignment.hard)  # (B, N)
        var = self.variance(x, mask, energy_target)
        frames = alignment.hard @ var.hidden  # (B, T, N) @ (B, N, H) -> (B, T, H)
        mel, post = self._decode(frames, batch.mel_mask, spk)
        return ModelOutput(mel, post, var.log_duration, var.energy, energy_target, alignment)

    @torch.no_grad()
    def align(self, batch) -> Tensor:
        """Hard durations (B, N) int64 of a batch by the aligner (MAS), without gradient. A batch
        carrying them (``dataclasses.replace(batch, durations=...)``) skips the aligner: exact
        for any loss whose parameters the alignment does not depend on (everything but the token
        embedding and the aligner), and the align and binarization terms are left out."""
        _, _, _, embedded = self._encode(batch.tokens, batch.token_lengths, batch.speakers)
        return self.aligner(embedded, batch.mels, batch.token_lengths, batch.mel_lengths).durations

    def forward(self, batch, binarization_weight: float = 1.0) -> LossOutput:
        """The training loss for ``batch``; see :func:`metatts.model.losses.acoustic_loss`."""
        return acoustic_loss(self.outputs(batch), batch, self.loss_config, binarization_weight)

    def loss(self, batch, binarization_weight: float = 1.0) -> LossOutput:
        return self(batch, binarization_weight)

    # -- synthesis -------------------------------------------------------------------------------
    def infer(self, tokens: Tensor, token_lengths: Tensor, speakers: Tensor,
              pace: float = 1.0) -> Prediction:
        """tokens (B, N), token_lengths (B,), speakers (B,) -> :class:`Prediction`.
        Call under ``torch.inference_mode()`` and ``eval()`` for synthesis."""
        x, mask, spk, _ = self._encode(tokens, token_lengths, speakers)
        var = self.variance(x, mask)
        durations = predicted_durations(var.log_duration, mask, pace)  # (B, N)
        path = durations_to_alignment(durations)  # (B, T, N)
        mel_lengths = durations.sum(1)
        frame_mask = sequence_mask(mel_lengths, path.shape[1])
        mel, post = self._decode(path @ var.hidden, frame_mask, spk)
        out = mel if post is None else post
        silence = torch.full_like(out, float(torch.log(torch.tensor(LOG_CLAMP))))
        return Prediction(torch.where(frame_mask[:, None], out, silence), mel_lengths, durations)

    # -- adaptation ------------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[str]]:
        """Names of parameters a voice may adapt, by group; each group contains the one before:

        - ``embedding``: ``speaker.new`` only (the new voice's vector),
        - ``conditional_norms``: + the scale/shift projections of every speaker-conditional norm,
        - ``decoder``: + everything downstream of the text encoder (speaker projection, variance
          adaptor, decoder, mel projection, postnet),
        - ``all``: every parameter.
        """
        names = [n for n, _ in self.named_parameters()]
        norms = {f"{m}.{p}" for m, mod in self.named_modules()
                 if isinstance(mod, ConditionalLayerNorm) for p, _ in mod.named_parameters()}
        downstream = ("speaker_proj.", "variance.", "decoder.", "mel_out.", "postnet.")
        embedding = ["speaker.new"]
        conditional = embedding + [n for n in names if n in norms]
        decoder = conditional + [n for n in names if n.startswith(downstream) and n not in norms]
        return {"embedding": embedding, "conditional_norms": conditional, "decoder": decoder,
                "all": names}


def count_parameters(model: nn.Module, names: list[str] | None = None) -> int:
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in (params if names is None else names))
