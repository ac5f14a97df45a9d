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

v2 switches (:class:`ModelConfig` ``pitch``, ``speaker_encoder``; off in v1 checkpoints, which then
build exactly the v1 modules and state dict):

- pitch: a batch may carry ``f0`` (B, T) Hz on the mel frames (0 unvoiced). It is normalized per
  speaker with the buffer ``pitch_stats`` (n_speakers, 2: mean and std of log-F0, set once from
  the training data by :meth:`FastSpeech2.set_pitch_stats`; a NEW_SPEAKER item uses the batch's
  own voiced frames of NEW_SPEAKER), averaged per token over the hard alignment, predicted by the
  variance adaptor and embedded into the decoder's input. A batch without ``f0`` trains no pitch.
- speaker encoder: a batch may carry ``references`` (B, n_mels, T_ref) with ``reference_lengths``
  (B,): another clip of each item's speaker. Its encoded vector is pulled toward the item's table
  row (detached) and, in training, replaces that row for a ``speaker_encoder_mix`` share of the
  items, so reconstruction teaches the encoder to speak a sentence it did not hear.
  :meth:`FastSpeech2.encode_speaker` turns a voice's clips into a vector for synthesis with no
  gradient step: pass it as ``speaker.new`` (speaker NEW_SPEAKER) or as ``infer(...,
  speaker_vectors=...)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metatts.audio import LOG_CLAMP, warp_mel
from metatts.data.pitch import normalize as normalize_pitch
from metatts.data.pitch import token_pitch, voice_stats
from metatts.model.aligner import Aligner, Alignment, durations_to_alignment, expand_tokens
# GROUPS (re-exported here): the names parameter_groups() returns, each containing the one before
from metatts.model.config import GROUPS, LossConfig, ModelConfig  # noqa: F401
from metatts.model.layers import ConditionalLayerNorm, FFTStack, PostNet, sequence_mask
from metatts.model.losses import LossOutput, acoustic_loss
from metatts.model.reference_attention import ReferenceAttention, stack_references
from metatts.model.speaker_encoder import SpeakerEncoder
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
        # the vector the duration, pitch and energy predictors read for NEW_SPEAKER items when
        # set (not NaN): adaptation may fix it to the start so that fitting a voice leaves its
        # timing and intonation to the pretrained predictors (``lock_timing``). Not saved with
        # the model; a voice that uses it carries it. Passed through functional_call like a
        # parameter.
        self.register_buffer("timing", torch.full((dim,), float("nan")), persistent=False)

    def timing_vectors(self, speakers: Tensor, vectors: Tensor) -> Tensor | None:
        """(B,) indices, (B, D) the vectors spoken with -> (B, D) the predictors' vectors, or
        None when no timing vector is set or no item is NEW_SPEAKER (then they are the same)."""
        new = speakers == NEW_SPEAKER
        if bool(torch.isnan(self.timing).any()) or not bool(new.any()):
            return None
        return torch.where(new[:, None], self.timing.expand_as(vectors), vectors)

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
    pitch: Tensor | None = None  # (B, N) predicted normalized log-F0
    pitch_target: Tensor | None = None  # (B, N) from the batch's f0 over the hard alignment
    pitch_mask: Tensor | None = None  # (B, N) bool, real tokens with at least one voiced frame
    encoded_speaker: Tensor | None = None  # (B, D) the encoder's vector of the references
    speaker_target: Tensor | None = None  # (B, D) the table rows it is pulled to (detached)
    speaker_target_mask: Tensor | None = None  # (B,) bool, items of a table speaker
    # speaker consistency (training only, when its loss weights are on): the encoder's vector of
    # the predicted mel (B', D) beside the vector it was spoken with (B', D, detached), for the
    # table speakers' items and for the novel vectors (see ModelConfig.novel_voices)
    consistency: tuple[Tensor, Tensor] | None = None
    novel: tuple[Tensor, Tensor] | None = None
    speaker_vector: Tensor | None = None  # (B, D) the vectors the items were spoken with

    @property
    def spoken(self) -> Tensor:
        """The mel the model speaks: the postnet's where it has one, else the decoder's."""
        return self.mel if self.mel_postnet is None else self.mel_postnet


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
        self.aligner_embedding = (nn.Embedding(c.n_symbols, c.aligner_embedding)
                                  if c.aligner_embedding else None)
        self.aligner = Aligner(c.n_mels, c.aligner_embedding or c.hidden, c.aligner_channels,
                               c.aligner_temperature, c.prior_scale)
        self.variance = VarianceAdaptor(c.hidden, c.variance_hidden, c.variance_kernel,
                                        c.variance_dropout, c.energy, c.pitch)
        if c.pitch:  # per speaker: mean and std of log-F0 over voiced frames (data, not learned)
            stats = torch.tensor([[math.log(100.0), 1.0]]).repeat(c.n_speakers, 1)
            self.register_buffer("pitch_stats", stats)
        self.speaker_encoder = (SpeakerEncoder(c.n_mels, c.speaker_encoder_hidden, c.speaker_dim,
                                               c.speaker_encoder_heads, dropout=c.dropout)
                                if c.speaker_encoder else None)
        self.decoder = FFTStack(c.decoder_layers, c.hidden, c.heads, c.ffn_hidden, c.ffn_kernel,
                                c.dropout, speaker_dim=c.speaker_dim,
                                adapter_rank=c.adapter_rank)
        self.mel_out = nn.Linear(c.hidden, c.n_mels)
        self.reference_in = self.reference_out = None
        if c.reference_attention:
            self.reference_in = ReferenceAttention(c.n_mels, c.hidden, c.heads, c.dropout)
            self.reference_out = ReferenceAttention(c.n_mels, c.hidden, c.heads, c.dropout)
        self.postnet = (PostNet(c.n_mels, c.postnet_channels, c.postnet_kernel, c.postnet_layers,
                                c.dropout) if c.postnet_layers > 0 else None)

    # -- shared pieces ---------------------------------------------------------------------------
    def _encode(self, tokens: Tensor, token_lengths: Tensor, speakers: Tensor,
                speaker_vectors: Tensor | None = None, text_states: Tensor | None = None):
        """-> token states (B, N, H), token mask (B, N), speaker vectors (B, D), embeddings,
        the token states the variance predictors read (B, N, H): the same unless a timing
        vector is set (:meth:`SpeakerTable.timing_vectors`), and the text encoder's states
        before any speaker is added (B, N, H). ``speaker_vectors`` (B, D), when given, replace
        the speakers' vectors; ``text_states`` (B, N, H), when given, are the text encoder's
        output computed beforehand (:meth:`text_states`), and the encoder is not run."""
        if int(token_lengths.min()) < 1:
            raise ValueError("every item needs at least one token.")
        if int(speakers.max()) >= self.config.n_speakers or int(speakers.min()) < NEW_SPEAKER:
            raise ValueError(f"speaker indices must be in [0, {self.config.n_speakers}) or "
                             f"NEW_SPEAKER ({NEW_SPEAKER}); got {speakers.tolist()}.")
        mask = sequence_mask(token_lengths, tokens.shape[1])
        embedded = self.token_embedding(tokens) * mask[..., None]  # (B, N, H)
        spk = self.speaker(speakers) if speaker_vectors is None else speaker_vectors  # (B, D)
        if text_states is not None and tuple(text_states.shape[:2]) != tuple(tokens.shape):
            raise ValueError(f"text_states of shape {tuple(text_states.shape)} do not belong to "
                             f"tokens of shape {tuple(tokens.shape)}; compute them from these "
                             "tokens (metatts.meta.support.fixed_text_states).")
        states = self.encoder(embedded, mask) if text_states is None else text_states
        x = states + self.speaker_proj(spk)[:, None] * mask[..., None]
        timing = self.speaker.timing_vectors(speakers, spk)
        x_var = x if timing is None else (
            states + self.speaker_proj(timing)[:, None] * mask[..., None])
        return x, mask, spk, embedded, x_var, states

    def _decode(self, frames: Tensor, frame_mask: Tensor, spk: Tensor, references=None):
        """frames (B, T, H) -> decoder mel and postnet mel, each (B, n_mels, T) or None.
        ``references``: (mels (B, n_mels, R), lengths (B,), present (B,) bool) for the
        reference attention, or None (the vector alone)."""
        if references is not None and self.reference_in is not None:
            frames = self.reference_in(frames, *references)
        hidden = self.decoder(frames, frame_mask, spk)
        if references is not None and self.reference_out is not None:
            hidden = self.reference_out(hidden, *references)
        mel = self.mel_out(hidden)  # (B, T, n_mels)
        post = None if self.postnet is None else mel + self.postnet(mel, frame_mask)
        return mel.transpose(1, 2), None if post is None else post.transpose(1, 2)

    # -- training --------------------------------------------------------------------------------
    def outputs(self, batch) -> ModelOutput:
        """Teacher-forced forward pass over a padded :class:`~metatts.data.Batch`."""
        if batch.mels.shape[1] != self.config.n_mels:
            raise ValueError(f"expected mels (B, {self.config.n_mels}, T), got "
                             f"{tuple(batch.mels.shape)}.")
        encoded, table, table_mask, mixed = self._speaker_vectors(batch)
        references = self._references(batch)
        if (references is not None and mixed is not None and self.training
                and self.config.reference_only > 0):  # a share spoken from the references only
            only = references[2] & (torch.rand(len(mixed), device=mixed.device)
                                    < self.config.reference_only)
            mean = self.speaker.table.weight.mean(0).detach()
            mixed = torch.where(only[:, None], mean.expand_as(mixed), mixed)
        x, mask, spk, embedded, x_var, states = self._encode(
            batch.tokens, batch.token_lengths, batch.speakers, mixed,
            getattr(batch, "text_states", None))
        if getattr(batch, "durations", None) is None:
            alignment = self.aligner(self._aligner_keys(batch, embedded), batch.mels,
                                     batch.token_lengths, batch.mel_lengths)
        else:  # fixed beforehand (see align()): the aligner is skipped
            hard = durations_to_alignment(batch.durations, batch.mels.shape[-1])
            alignment = Alignment(None, None, None, hard, batch.durations)
        energy_target = None
        if self.variance.energy is not None:
            energy_target = token_average(frame_energy(batch.mels), alignment.hard)  # (B, N)
        pitch_target = pitch_mask = None
        if self.variance.pitch is not None and getattr(batch, "f0", None) is not None:
            pitch_target, pitch_mask = self._pitch_target(batch, alignment.hard)
            pitch_mask = pitch_mask & mask
        var = self.variance(x, mask, energy_target, pitch_target, pitch_mask, x_var)
        # (B, T, H): each frame its token's state (= alignment.hard @ var.hidden)
        frames = expand_tokens(var.hidden, alignment.durations, alignment.hard.shape[1])
        mel, post = self._decode(frames, batch.mel_mask, spk, references)
        consistency = novel = None
        if self.training and self.speaker_encoder is not None:
            known = batch.speakers != NEW_SPEAKER
            if self.loss_config.consistency > 0 and bool(known.any()):
                said = mel if post is None else post
                consistency = (self._fixed_encoder(said[known], batch.mel_lengths[known]),
                               spk[known].detach())
            if self.loss_config.novel > 0 and self.config.novel_voices > 0:
                novel = self._novel(batch, known, states, mask, spk, energy_target,
                                    pitch_target, pitch_mask, alignment)
        return ModelOutput(mel, post, var.log_duration, var.energy, energy_target, alignment,
                           var.pitch, pitch_target, pitch_mask, encoded, table, table_mask,
                           consistency, novel, spk)

    def identity_distance(self, outputs: Sequence[ModelOutput], batches: Sequence) -> Tensor:
        """How far the predicted mels are from their clips' voice as the model's own speaker
        encoder hears it: over the items of every batch (the parts of one support set), the mean
        squared difference between the encoder's vector of the spoken mel and its vector of the
        real mel (no gradient), per dimension. A judge-free identity term for adaptation (the
        mel L1 barely moves once the voice is roughly right). The encoder's weights get no
        gradient; the spoken mels (the decoder that made them) do."""
        if self.speaker_encoder is None:
            raise ValueError("the identity term needs the model's speaker encoder, and this "
                             "model has none (model.speaker_encoder is off); leave it out.")
        errors, items = [], 0
        encoder = self.speaker_encoder
        training = encoder.training
        encoder.eval()  # no dropout: the same clip always has the same target
        try:
            for out, batch in zip(outputs, batches):
                with torch.no_grad():
                    real = encoder(batch.mels.float(), batch.mel_lengths)
                # float32 mels: under autocast the two vectors are pooled alike
                said = self._fixed_encoder(out.spoken.float(), batch.mel_lengths)
                errors.append((said.float() - real.float()).square().mean(1).sum())
                items += len(real)
        finally:
            encoder.train(training)
        if not items:
            raise ValueError("the identity term got no items.")
        return torch.stack(errors).sum() / items

    def _fixed_encoder(self, mels: Tensor, lengths: Tensor) -> Tensor:
        """The speaker encoder's vectors of ``mels`` (B, n_mels, T) with its weights held fixed:
        the gradient reaches the mels (the decoder that made them), never the encoder."""
        fixed = {k: v.detach() for k, v in self.speaker_encoder.named_parameters()}
        return torch.func.functional_call(self.speaker_encoder, fixed, (mels, lengths))

    def _novel(self, batch, known: Tensor, states: Tensor, mask: Tensor, spk: Tensor,
               energy_target, pitch_target, pitch_mask, alignment):
        """Decode a ``novel_voices`` share of the table speakers' items again with a vector no
        training speaker has: the item's own pushed away from another item's of a different
        speaker, ``v + u * (v - w)`` with u uniform in [0, novel_range]; same text, timing and
        intonation targets. -> (the encoder's vectors of those mels, the novel vectors), or None
        when no item is drawn or no partner exists."""
        c = self.config
        rows = spk.detach()
        pick = known & (torch.rand(len(rows), device=rows.device) < c.novel_voices)
        warped = _warped(batch)
        if warped is not None:  # pushed from a warped voice's vector: not a table speaker's
            pick, known = pick & ~warped, known & ~warped
        if not bool(pick.any()):
            return None
        chosen, partners = [], []
        candidates = known.nonzero().flatten()
        for i in pick.nonzero().flatten().tolist():  # a partner of another speaker, at random
            other = candidates[batch.speakers[candidates] != batch.speakers[i]]
            if len(other):
                chosen.append(i)
                partners.append(int(other[torch.randint(len(other), (1,))]))
        if not chosen:
            return None
        idx = torch.tensor(chosen, device=rows.device)
        u = torch.rand(len(chosen), 1, device=rows.device) * c.novel_range
        vectors = rows[idx] + u * (rows[idx] - rows[torch.tensor(partners, device=rows.device)])
        x_new = states[idx] + self.speaker_proj(vectors)[:, None] * mask[idx, :, None]
        sub = (lambda t: None if t is None else t[idx])
        var_new = self.variance(x_new, mask[idx], sub(energy_target), sub(pitch_target),
                                sub(pitch_mask), x_new)
        frames = expand_tokens(var_new.hidden, alignment.durations[idx], alignment.hard.shape[1])
        mel, post = self._decode(frames, batch.mel_mask[idx], vectors)
        said = mel if post is None else post
        return self._fixed_encoder(said, batch.mel_lengths[idx]), vectors

    def _speaker_vectors(self, batch):
        """With an encoder and references in the batch: (encoded (B, D), detached table rows
        (B, D), mask of table speakers (B,), the vectors to speak with (B, D): the encoded one
        for a ``speaker_encoder_mix`` share of the table speakers in training, else the row);
        otherwise four Nones (the speakers' own vectors are used)."""
        references = getattr(batch, "references", None)
        if self.speaker_encoder is None or references is None:
            return None, None, None, None
        encoded = self.speaker_encoder(references, batch.reference_lengths)  # (B, D)
        rows = self.speaker(batch.speakers)
        known = batch.speakers != NEW_SPEAKER
        use = torch.zeros_like(known)  # eval: the table rows
        if self.training:
            use = known & (torch.rand(len(rows), device=rows.device)
                           < self.config.speaker_encoder_mix)
        warped = _warped(batch)
        if warped is not None:  # a voice no table row is: always the encoder's, never pulled
            use, known = use | (warped & known), known & ~warped
        return encoded, rows.detach(), known, torch.where(use[:, None], encoded, rows)

    def _references(self, batch):
        """What the reference attention reads for ``batch``: (mels, lengths, present) or None
        (no reference attention, or a batch without references). In training a
        ``reference_dropout`` share of the items reads none."""
        refs = getattr(batch, "references", None)
        if self.reference_in is None or refs is None:
            return None
        present = torch.ones(refs.shape[0], dtype=torch.bool, device=refs.device)
        if self.training and self.config.reference_dropout > 0:
            present = torch.rand(refs.shape[0], device=refs.device) >= self.config.reference_dropout
        return refs, batch.reference_lengths, present

    def reference_clips(self, mels: Sequence[Tensor]) -> tuple[Tensor, Tensor] | None:
        """A voice's clips, each log-mel (n_mels, T_i), as the reference attention reads them:
        (1, n_mels, R) side by side on the model's device, at most ``reference_frames``, and
        the length (1,); None for a model without reference attention (or no clips)."""
        if self.reference_in is None or not mels:
            return None
        device = self.mel_out.weight.device
        return stack_references([torch.as_tensor(m, dtype=torch.float32).to(device)
                                 for m in mels], self.config.reference_frames)

    def _pitch_target(self, batch, hard: Tensor) -> tuple[Tensor, Tensor]:
        """Token-level normalized log-F0 (B, N) and where it exists (B, N) bool."""
        with torch.no_grad():
            stats = self.pitch_stats[batch.speakers.clamp(min=0)]  # (B, 2)
            if getattr(batch, "warp", None) is not None:  # its F0 was scaled by exp(warp)
                stats = stats + torch.stack([batch.warp, torch.zeros_like(batch.warp)], 1)
            new = batch.speakers == NEW_SPEAKER
            if bool(new.any()):  # a voice being adapted: its own clips' statistics (of all its
                # clips when the batch is one part of a split support set: Batch.pitch_stats)
                own = getattr(batch, "pitch_stats", None)
                own = voice_stats(batch.f0[new]) if own is None else own.to(stats)
                if own is not None:
                    stats = torch.where(new[:, None], own, stats)
            values, voiced = normalize_pitch(batch.f0, stats[:, 0], stats[:, 1])
            return token_pitch(values, voiced, hard)

    @torch.no_grad()
    def text_states(self, batch) -> Tensor:
        """The text encoder's output (B, N, H) for a batch's tokens, without gradient: what a
        batch may carry as ``text_states`` while no parameter it depends on (the token embedding
        and the text encoder) moves, so that each step skips the text encoder."""
        return self._encode(batch.tokens, batch.token_lengths, batch.speakers)[5]

    @torch.no_grad()
    def align(self, batch) -> Tensor:
        """Hard durations (B, N) int64 of a batch by the aligner (MAS), without gradient. A batch
        carrying them (``dataclasses.replace(batch, durations=...)``) skips the aligner: exact
        for any loss whose parameters the alignment does not depend on (everything but the token
        embedding and the aligner), and the align and binarization terms are left out."""
        embedded = (None if self.aligner_embedding is not None else
                    self._encode(batch.tokens, batch.token_lengths, batch.speakers)[3])
        return self.aligner(self._aligner_keys(batch, embedded), batch.mels, batch.token_lengths,
                            batch.mel_lengths).durations

    def _aligner_keys(self, batch, embedded: Tensor | None) -> Tensor:
        """What the aligner reads for the tokens: the model's embeddings (B, N, H), or those of
        its own embedding (``model.aligner_embedding``), masked alike."""
        if self.aligner_embedding is None:
            return embedded
        mask = sequence_mask(batch.token_lengths, batch.tokens.shape[1])
        return self.aligner_embedding(batch.tokens) * mask[..., None]

    def forward(self, batch, binarization_weight: float = 1.0) -> LossOutput:
        """The training loss for ``batch``; see :func:`metatts.model.losses.acoustic_loss`.
        In training with ``model.warp_voices`` on, a share of the items is first turned into
        new voices (:func:`warp_voices`), targets included."""
        c = self.config
        if self.training and c.warp_voices > 0:
            batch = warp_voices(batch, c.warp_voices, c.warp_range)
        out = self.outputs(batch)
        loss = acoustic_loss(out, batch, self.loss_config, binarization_weight)
        return dataclasses.replace(loss, output=out, batch=batch)

    def loss(self, batch, binarization_weight: float = 1.0) -> LossOutput:
        return self(batch, binarization_weight)

    # -- synthesis -------------------------------------------------------------------------------
    def infer(self, tokens: Tensor, token_lengths: Tensor, speakers: Tensor,
              pace: float = 1.0, speaker_vectors: Tensor | None = None,
              references: tuple[Tensor, Tensor] | None = None) -> Prediction:
        """tokens (B, N), token_lengths (B,), speakers (B,) -> :class:`Prediction`.
        ``speaker_vectors`` (B, D) (e.g. from :meth:`encode_speaker`) replace the speakers'.
        ``references``: (mels (1 or B, n_mels, R), lengths (1 or B,)) the reference attention
        reads (:func:`metatts.model.reference_attention.stack_references` of a voice's clips);
        ignored by a model without it.
        Call under ``torch.inference_mode()`` and ``eval()`` for synthesis."""
        x, mask, spk, _, x_var, _ = self._encode(tokens, token_lengths, speakers,
                                                 speaker_vectors)
        var = self.variance(x, mask, predictor_input=x_var)
        durations = predicted_durations(var.log_duration, mask, pace)  # (B, N)
        mel_lengths = durations.sum(1)
        frames = int(mel_lengths.max())
        frame_mask = sequence_mask(mel_lengths, frames)
        refs = None
        if references is not None and self.reference_in is not None:
            mels, lengths = references
            B = tokens.shape[0]
            refs = (mels.expand(B, -1, -1), lengths.expand(B),
                    torch.ones(B, dtype=torch.bool, device=tokens.device))
        mel, post = self._decode(expand_tokens(var.hidden, durations, frames), frame_mask, spk,
                                 refs)
        out = mel if post is None else post
        silence = torch.full_like(out, float(torch.log(torch.tensor(LOG_CLAMP))))
        return Prediction(torch.where(frame_mask[:, None], out, silence), mel_lengths, durations)

    def encode_speaker(self, mels: list[Tensor]) -> Tensor:
        """Clips of one voice, each log-mel (n_mels, T_i) from :func:`metatts.audio.mel_spectrogram`
        of a prepared clip -> its speaker vector (speaker_dim,), pooled over frames and clips.
        Use it as ``speaker.new`` to speak in that voice with no gradient step (or as the start
        of adaptation). Runs without gradient; the model should be in eval mode."""
        if self.speaker_encoder is None:
            raise ValueError("this model has no speaker encoder (model.speaker_encoder is off); "
                             "adapt a voice with `python -m metatts adapt` instead.")
        with torch.no_grad():
            return self.speaker_encoder.pool_clips(list(mels))

    @torch.no_grad()
    def set_pitch_stats(self, stats: Tensor) -> None:
        """(n_speakers, 2) mean and std of each training speaker's voiced log-F0."""
        self.pitch_stats.copy_(stats.to(self.pitch_stats))

    # -- adaptation ------------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[str]]:
        """Names of parameters a voice may adapt, by group; each group contains the one before:

        - ``embedding``: ``speaker.new`` only (the new voice's vector),
        - ``conditional_norms``: + the scale/shift projections of every speaker-conditional norm,
        - ``adapters``: + the decoder's low-rank adapters (the same as ``conditional_norms`` in a
          model without them, ``model.adapter_rank`` 0),
        - ``decoder``: + everything downstream of the text encoder (speaker projection, variance
          adaptor, decoder, mel projection, postnet),
        - ``all``: every parameter.
        """
        names = [n for n, _ in self.named_parameters()]
        norms = {f"{m}.{p}" for m, mod in self.named_modules()
                 if isinstance(mod, ConditionalLayerNorm) for p, _ in mod.named_parameters()}
        adapter = set(self.adapter_names())
        downstream = ("speaker_proj.", "variance.", "decoder.", "mel_out.", "postnet.")
        embedding = ["speaker.new"]
        conditional = embedding + [n for n in names if n in norms]
        adapters = conditional + [n for n in names if n in adapter]
        decoder = adapters + [n for n in names if n.startswith(downstream)
                              and n not in norms and n not in adapter]
        return {"embedding": embedding, "conditional_norms": conditional, "adapters": adapters,
                "decoder": decoder, "all": names}

    def adapter_names(self) -> list[str]:
        """Parameter names of the decoder's low-rank adapters (empty without them)."""
        return [n for n, _ in self.named_parameters() if ".adapter." in n]


def _warped(batch) -> Tensor | None:
    """(B,) bool: the items :func:`warp_voices` turned into new voices, or None."""
    warp = getattr(batch, "warp", None)
    return None if warp is None else warp != 0


def warp_voices(batch, share: float, max_log: float):
    """A copy of a training batch in which each table speaker's item is, with probability
    ``share``, a voice no training speaker has: its mel, its reference clip's mel and its F0
    scaled in frequency by ``exp(u)``, u uniform in [-max_log, max_log]
    (:func:`metatts.audio.warp_mel`; the vocoder renders such a mel at the scaled pitch), and
    ``warp`` holds u (0 for the others). Needs a batch with ``f0`` and ``references`` (else it
    is returned as it is); draws from torch's global generator, as the trainer's other draws."""
    if getattr(batch, "references", None) is None or getattr(batch, "f0", None) is None:
        return batch
    device = batch.speakers.device
    pick = (batch.speakers != NEW_SPEAKER) & (torch.rand(len(batch.speakers), device=device)
                                              < share)
    if not bool(pick.any()):
        return batch
    u = (torch.rand(len(pick), device=device) * 2 - 1) * max_log * pick
    factors = [math.exp(float(x)) for x in u]

    def warped(mels: Tensor) -> Tensor:
        return torch.stack([warp_mel(m, a) for m, a in zip(mels, factors)])

    return dataclasses.replace(batch, mels=warped(batch.mels),
                               references=warped(batch.references),
                               f0=batch.f0 * torch.exp(u)[:, None], warp=u)


def count_parameters(model: nn.Module, names: list[str] | None = None) -> int:
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in (params if names is None else names))
