"""Typed, frozen configuration: the single source of truth for a run, saved in every checkpoint.

Config files (JSON) hold overrides only: ``{"model": {"hidden": 64}, "train": {"steps": 50}}``.
Every key must name a field; an unknown key or a value of the wrong type is a :class:`ConfigError`
that says which key and what was expected.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from metatts import audio


class ConfigError(ValueError):
    """A config file or dict that does not fit the dataclasses: unknown key, wrong type."""


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the acoustic model; ``n_symbols``/``n_speakers`` are set from the data."""

    n_symbols: int = 0  # size of the symbol table
    n_speakers: int = 0  # rows of the speaker table
    hidden: int = 256
    heads: int = 2
    encoder_layers: int = 4
    decoder_layers: int = 4
    ffn_hidden: int = 1024
    ffn_kernel: int = 3  # first conv of each FFT block's feed-forward; the second is 1x1
    dropout: float = 0.1
    speaker_dim: int = 256
    variance_hidden: int = 256
    variance_kernel: int = 3
    variance_dropout: float = 0.5
    energy: bool = True  # predict phoneme-level energy (taken from the mel) and condition on it
    # v2 (off in the v1 checkpoints, which load and behave exactly as before):
    pitch: bool = False  # predict token-level log-F0 (per-speaker normalized), condition on it
    speaker_encoder: bool = False  # a reference encoder: mel clips -> speaker vector
    speaker_encoder_hidden: int = 128
    speaker_encoder_heads: int = 2
    # share of training items reconstructed from the encoder's vector of another clip of their
    # speaker instead of the speaker table's row
    speaker_encoder_mix: float = 0.5
    # frames of the reference clip the encoder sees per training item (a window drawn by seed
    # and step; 256 = 3 s); synthesis encodes whole clips
    speaker_encoder_crop: int = 256
    # rank of a zero-initialized low-rank residual adapter after each decoder block (0: none);
    # adapted (group "adapters") and meta-learned, never pretrained
    adapter_rank: int = 0
    # share of training items also decoded with a *novel* speaker vector (their own pushed away
    # from another item's: row + u * (row - other), u uniform in [0, novel_range]), which no
    # audio exists for: only the speaker-consistency term (loss.novel) trains on it, so that the
    # decoder learns to render vectors beyond the training speakers (0: off)
    novel_voices: float = 0.0
    novel_range: float = 0.5
    # share of training items (and their reference clips) turned into a voice no training speaker
    # has by scaling every frequency of their mel and F0 by one factor drawn log-uniformly from
    # [exp(-warp_range), exp(warp_range)] (vocal-tract-length perturbation; metatts.audio.warp_mel):
    # such an item is spoken from the encoder's vector of its warped reference, never its table
    # row, so encoder and decoder meet voices beyond the training speakers' span (0: off)
    warp_voices: float = 0.0
    warp_range: float = 0.15
    # the decoder's frames also attend to the reference clips' mel frames, at its input and
    # before the mel projection (metatts.model.reference_attention; needs speaker_encoder, whose
    # reference clips it reads); in training a reference_dropout share of the items is spoken
    # without them, so that the vector alone (adaptation's path) keeps working
    reference_attention: bool = False
    reference_dropout: float = 0.3
    # share of the training items that read references and are spoken from the mean of the
    # speaker table instead of their own vector: their voice can come from the references only,
    # so the attention must learn to carry it (0: off)
    reference_only: float = 0.0
    reference_frames: int = 1024  # synthesis: at most this many frames of a voice's clips
    postnet_layers: int = 5  # 0 for none
    postnet_channels: int = 256
    postnet_kernel: int = 5
    aligner_channels: int = 80
    # the aligner reads its own token embedding of this width instead of the model's (0): a
    # model of another width can keep a trained aligner (a warm start copies it, and that
    # model's token embedding as this one), e.g. when training on durations fixed beforehand
    aligner_embedding: int = 0
    aligner_temperature: float = 0.0005
    prior_scale: float = 1.0  # omega of the beta-binomial alignment prior
    n_mels: int = audio.N_MELS

    def __post_init__(self):
        if self.n_mels != audio.N_MELS:
            raise ConfigError(f"model.n_mels must be {audio.N_MELS}, the vocoder's mel count.")
        if self.hidden % self.heads:
            raise ConfigError(f"model.hidden ({self.hidden}) must be divisible by model.heads "
                              f"({self.heads}).")
        for name in ("hidden", "heads", "ffn_hidden", "speaker_dim", "variance_hidden",
                     "speaker_encoder_hidden", "speaker_encoder_heads", "speaker_encoder_crop",
                     "reference_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be positive.")
        if self.aligner_embedding < 0:
            raise ConfigError(f"model.aligner_embedding must be 0 (the model's token embedding) "
                              f"or a width, got {self.aligner_embedding}.")
        if self.adapter_rank < 0:
            raise ConfigError(f"model.adapter_rank must be 0 (no adapters) or positive, got "
                              f"{self.adapter_rank}.")
        if self.speaker_encoder_hidden % self.speaker_encoder_heads:
            raise ConfigError("model.speaker_encoder_hidden must be divisible by "
                              "model.speaker_encoder_heads.")
        for name in ("speaker_encoder_mix", "novel_voices", "warp_voices", "reference_only"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"model.{name} is a fraction in [0, 1], got "
                                  f"{getattr(self, name)}.")
        if self.novel_range < 0:
            raise ConfigError(f"model.novel_range must be >= 0, got {self.novel_range}.")
        if not 0.0 <= self.warp_range <= 0.5:
            raise ConfigError(f"model.warp_range is a log frequency factor in [0, 0.5], got "
                              f"{self.warp_range}.")
        if self.reference_attention and not self.speaker_encoder:
            raise ConfigError("model.reference_attention needs model.speaker_encoder (it reads "
                              "the encoder's reference clips).")
        if not 0.0 <= self.reference_dropout < 1.0:
            raise ConfigError(f"model.reference_dropout is a fraction in [0, 1), got "
                              f"{self.reference_dropout}.")
        if self.warp_voices > 0 and not (self.speaker_encoder and self.pitch):
            raise ConfigError("model.warp_voices needs model.speaker_encoder and model.pitch "
                              "(a warped voice is spoken from the encoder's vector).")

    @property
    def generation(self) -> int:
        """2 for a model with pitch or a speaker encoder (the v2 acoustic model), else 1."""
        return 2 if self.pitch or self.speaker_encoder or self.adapter_rank else 1


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms (the binarization weight is ramped by the trainer)."""

    mel: float = 1.0  # L1 on the decoder's mel
    postnet: float = 1.0  # L1 on the postnet's mel
    duration: float = 1.0  # MSE on log(1 + frames)
    energy: float = 0.1  # MSE on phoneme-level energy
    pitch: float = 0.1  # MSE on token-level normalized log-F0, voiced tokens only
    speaker_encoder: float = 1.0  # MSE of the encoder's vector to the (detached) table row
    # speaker consistency (training only, models with an encoder; 0: not computed): MSE between
    # the encoder's vector of the *predicted* mel (encoder weights held fixed for this term) and
    # the vector it was spoken with, for the training speakers' items ...
    consistency: float = 0.0
    # ... and for the novel vectors of model.novel_voices
    novel: float = 0.0
    # adaptation only, when its terms name them and the checkpoint holds the discriminator of
    # adversarial pretraining (metatts.model.discriminator.critic_terms): feature matching
    # (scaled to the mel L1's size) and the LSGAN term against that fixed discriminator
    critic_fm: float = 0.5
    critic_adv: float = 0.1
    align: float = 1.0  # forward-sum (CTC over [blank, tokens]) negative log-likelihood
    binarization: float = 1.0  # pulls soft attention toward the hard MAS path


@dataclass(frozen=True)
class PostFilterConfig:
    """Synthesis-time mel post-filter (see :mod:`metatts.postfilter`): the detail of the predicted
    mel around a local mean over ``spectral_kernel`` mel bins, then over ``temporal_kernel``
    frames, is scaled by ``spectral`` / ``temporal``. 1.0 leaves the mel as the model made it;
    ``python -m metatts postfilter`` measures the strengths from the training data."""

    spectral: float = 1.0
    spectral_kernel: int = 3  # mel bins, odd
    temporal: float = 1.0
    temporal_kernel: int = 5  # frames, odd

    def __post_init__(self):
        for name in ("spectral_kernel", "temporal_kernel"):
            k = getattr(self, name)
            if k < 1 or k % 2 == 0:
                raise ConfigError(f"postfilter.{name} must be a positive odd number, got {k}.")
        for name in ("spectral", "temporal"):
            if not 0.0 < getattr(self, name) <= 4.0:
                raise ConfigError(f"postfilter.{name} must be in (0, 4] (1.0 = off), got "
                                  f"{getattr(self, name)}.")

    @property
    def active(self) -> bool:
        return self.spectral != 1.0 or self.temporal != 1.0


@dataclass(frozen=True)
class DataConfig:
    """What to train on. ``datasets`` are anything :func:`metatts.data.read_dataset` reads."""

    datasets: tuple[str, ...] = ("data/corpus",)
    tokens: str = "phonemes"  # or "characters"
    cache_dir: str = ""  # feature cache; "" means <run dir>/features
    max_seconds: float = 12.0  # longer clips are left out of training
    val_speakers: float = 0.1  # fraction of speakers held out entirely (for adaptation experiments)
    test_speakers: float = 0.1  # fraction, in [0, 1); a manifest's own split column wins
    split_seed: int = 0
    val_utterances: int = 2  # utterances per training speaker held out for validation loss
    # manifest voice groups left out of training entirely (e.g. ["engine"]: the previous corpus's
    # engine voices)
    exclude_groups: tuple[str, ...] = ()
    # fraction of the training speakers reserved for meta-training (metatts.data.splits
    # .reserve_speakers): pretraining leaves them out, and meta-training from a checkpoint
    # pretrained so draws its tasks from them only: voices the model never heard, as at test time
    meta_speakers: float = 0.0

    def __post_init__(self):
        if self.tokens not in ("phonemes", "characters"):
            raise ConfigError(f"data.tokens must be phonemes or characters, got {self.tokens!r}.")
        if not self.datasets:
            raise ConfigError("data.datasets is empty: name at least one dataset.")
        for name in ("val_speakers", "test_speakers", "meta_speakers"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"data.{name} is a fraction of the speakers in [0, 1), got "
                                  f"{getattr(self, name)}; 0.1 holds out a tenth of them.")


@dataclass(frozen=True)
class TrainConfig:
    """Optimization and bookkeeping. Steps count optimizer updates over all processes."""

    run_dir: str = "runs/base"
    steps: int = 100_000
    batch_size: int = 16  # per process
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup_steps: int = 4000  # linear warm-up, then inverse square root decay
    grad_clip: float = 1.0
    binarization_start: int = 5000  # step at which the binarization loss starts
    binarization_ramp: int = 5000  # steps to ramp its weight from 0 to 1
    seed: int = 0
    log_every: int = 50
    validate_every: int = 2000
    checkpoint_every: int = 2000
    keep_checkpoints: int = 3
    num_workers: int = 0
    device: str = "auto"  # "auto" (cuda when present), "cpu", "cuda"
    # warm start: a checkpoint whose tensors of the same name and shape start this run (text
    # encoder, aligner, decoder, ...); the speaker table and everything new (pitch, encoder,
    # adapters) start fresh. Empty: from scratch. Ignored when resuming.
    init_from: str = ""
    # weight averaging: an exponential moving average of the parameters with this decay per step
    # (0: off) is what checkpoints save as the model, and what validation scores; the optimized
    # weights travel beside it for --resume. At 0.995 it averages over about the last 200 steps.
    ema_decay: float = 0.0
    # adversarial training of the mel against over-smoothing (metatts.train.adversarial):
    # weight of the generator's LSGAN term (0: off, no discriminator), of feature matching (as
    # a multiple of the mel L1's size), the discriminator's window (frames), width, Adam rate,
    # and its steps alone before the generator's terms count
    adversarial: float = 0.0
    feature_matching: float = 0.0
    adversarial_window: int = 32
    adversarial_channels: int = 32
    adversarial_lr: float = 2e-4
    adversarial_warmup: int = 100

    @property
    def adversarial_on(self) -> bool:
        return self.adversarial > 0 or self.feature_matching > 0

    def __post_init__(self):
        if not str(self.run_dir).strip() or str(self.run_dir).strip() == ".":
            raise ConfigError(f"train.run_dir is {self.run_dir!r}: name a folder for the run's "
                              "checkpoints and logs (e.g. runs/mine), not the current one.")
        for name in ("adversarial", "feature_matching", "adversarial_warmup"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be 0 or more, got {getattr(self, name)}.")
        if self.adversarial_window < 8 or self.adversarial_channels < 1 or \
                not self.adversarial_lr > 0:
            raise ConfigError("train.adversarial_window must be at least 8 frames, "
                              "adversarial_channels at least 1 and adversarial_lr positive; got "
                              f"{self.adversarial_window}, {self.adversarial_channels}, "
                              f"{self.adversarial_lr}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {self.ema_decay} "
                              "(0 turns weight averaging off; 0.995 averages ~200 steps).")
        for name in ("steps", "batch_size", "log_every", "validate_every", "checkpoint_every",
                     "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be at least 1, got {getattr(self, name)}.")
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}.")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.device!r}.")


ALGOS = ("maml", "fomaml", "reptile")
# FastSpeech2.parameter_groups(): each group contains the one before
GROUPS = ("embedding", "conditional_norms", "adapters", "decoder", "all")


@dataclass(frozen=True)
class MetaInnerConfig:
    """The inner loop of meta-training, and adaptation's defaults for a meta-learned checkpoint.
    Field names match :class:`metatts.meta.InnerConfig` (which validates them)."""

    groups: tuple[str, ...] = ("embedding",)  # parameter groups that adapt
    steps: int = 5
    lr: float = 0.1
    optimizer: str = "sgd"  # "sgd" or "adam" (adam: first-order algorithms only)
    batching: str = "full"  # "full", "stochastic" or "minibatch"
    batch_size: int = 4  # clips per inner step with "minibatch"
    betas: tuple[float, float] = (0.9, 0.999)  # inner Adam only
    eps: float = 1e-8  # inner Adam only
    proximal: float = 0.0  # pull toward the start (intelligibility guard)
    terms: tuple[str, ...] = ()  # loss terms the inner steps follow; empty: the whole loss
    lock_timing: bool = False  # duration, pitch and energy predictors read the start's vector
    precision: str = "float32"  # "bfloat16": the inner steps under autocast (faster, same state)
    identity: float = 0.0  # weight of the own-encoder identity term (InnerConfig.identity)
    verifier: float = 0.0  # weight of the verifier term (InnerConfig.verifier)
    verifier_every: int = 1  # ... on every n-th inner step (InnerConfig.verifier_every)


@dataclass(frozen=True)
class MetaConfig:
    """Meta-training from a pretrained checkpoint (``python -m metatts train --algo ...``).

    Each outer step draws ``meta_batch`` training speakers, an episode of ``k`` support and ``q``
    query clips for each, adapts on the support (speaker ``speaker.new``) and updates the start
    by the query loss. Bookkeeping (run_dir, seed, log/validate/checkpoint intervals, device)
    comes from the ``train`` section; the model and loss sections from the init checkpoint.
    """

    algo: str = "fomaml"  # "maml" (second order), "fomaml" or "reptile"
    init: str = ""  # pretrained checkpoint to start from; "" means the shipped one
    k: int = 4  # support clips per episode
    q: int = 4  # query clips per episode
    meta_batch: int = 4  # episodes (speakers) per outer step, over all processes
    inner: MetaInnerConfig = field(default_factory=MetaInnerConfig)
    steps: int = 2000  # outer steps
    outer_lr: float = 1e-4
    outer_optimizer: str = "adam"  # "adam" or "sgd" (sgd at lr 1 on Reptile moves to phi)
    learn_new_speaker: bool = True  # meta-learn speaker.new (the new voice's start)
    # where a task's adaptation starts: "learned" (speaker.new, one vector for every voice) or
    # "encoder" (the speaker encoder's vector of the task's support clips, meta-learned with the
    # rest; v2 models)
    start: str = "learned"
    # with start "encoder": the outer loop also trains the speaker encoder (False: the encoder
    # keeps its pretrained weights and computes the start; the outer groups still learn)
    learn_encoder: bool = True
    # parameter groups whose start the outer loop learns (model.parameter_groups(); the speaker
    # table never): ("all",) is the whole network; the adapted groups alone keep the rest of the
    # pretrained model exactly as it was
    outer_groups: tuple[str, ...] = ("all",)
    # Meta-SGD (Li et al., 2017): also learn one inner learning rate per adapted parameter
    # element, starting at inner.lr (maml / fomaml with inner SGD); adaptation from the
    # checkpoint then steps with them
    learn_inner_lrs: bool = False
    lrs_outer_lr: float = 1e-3  # the outer optimizer's learning rate for those rates
    # one learned rate per adapted tensor instead of per element (MAML++'s per-layer rates); with
    # an Adam inner loop (fomaml) each rate replaces inner.lr for its tensor's Adam steps
    lrs_per_tensor: bool = False
    val_steps: tuple[int, ...] = (0, 5)  # inner steps at which validation query loss is measured
    val_episodes: int = 8  # episodes of validation speakers per validation
    # keep only training-task speakers matching one of these: shell patterns of speaker names
    # ("kokoro_en_*") or "group:NAME" for a voice group ("group:engine"); empty keeps all
    task_speakers: tuple[str, ...] = ()
    # weight of the identity term in the query loss, the outer objective (the model's own speaker
    # encoder's view of the adapted voice against the query clips': see
    # metatts.meta.InnerConfig.identity); 0: the query loss alone. The training log's "query"
    # then includes the term; validation's query_after_N never does (identity_after_N beside it)
    query_identity: float = 0.0
    # weight of the query clips' loss after frame matching on the support clips (the decoder's
    # hidden states as keys, as adaptation and the app speak: metatts.frames.corrected_loss),
    # added to the query loss (maml / fomaml); 0: none. Validation then also reports it after
    # each val_steps count (frames_after_N)
    query_frames: float = 0.0
    # weight of the query clips' verifier term, added to the query loss (maml / fomaml): how far
    # the adapted voice speaking the query sentences is from the query clips' voice as the
    # corpus-trained speaker verifier hears it (metatts.verifier; not a benchmark judge); 0:
    # none. Validation then also reports it after each val_steps count (verifier_after_N)
    query_verifier: float = 0.0
    # inner step counts after which the query objective is taken, their mean the outer
    # objective (MAML++'s multi-step loss: a start learned for every budget, not for
    # inner.steps alone; maml / fomaml; the training log's "query" is then that mean); empty:
    # after inner.steps only
    query_steps: tuple[int, ...] = ()
    # weight of the support clips' loss at the adapted parameters, added to the query loss
    # (maml / fomaml): the outer objective then asks how well the steps fit the clips they saw as
    # well as how the voice says other sentences (the query loss alone stops falling after about
    # 10 steps while the voice, by ECAPA, keeps nearing; docs/experiments.md); 0: none. The
    # training log's "query" then includes the term; validation's support_after_N reports it
    query_support: float = 0.0
    # share of the training tasks turned into voices no training speaker has: every clip of the
    # task (support and query: log-mel and F0) scaled in frequency by one factor exp(u), u
    # uniform in [-warp_range, warp_range] (metatts.audio.warp_mel, as model.warp_voices does
    # in pretraining), meant to meet voices the pretrained model has not heard, as the held-out
    # ones are (a scale within 15 % proved as near the model as the training voices themselves:
    # docs/experiments.md); 0: none. Validation tasks are never warped
    warp_tasks: float = 0.0
    warp_range: float = 0.15

    @property
    def uses_identity(self) -> bool:
        """Whether the run follows the identity term (inner loop or outer objective); its
        validation then reports the query clips' identity distance."""
        return self.query_identity > 0 or self.inner.identity > 0

    def __post_init__(self):
        if self.algo not in ALGOS:
            raise ConfigError(f"meta.algo must be one of {', '.join(ALGOS)}, got {self.algo!r}.")
        if self.start not in ("learned", "encoder"):
            raise ConfigError(f"meta.start must be learned or encoder, got {self.start!r}.")
        for name in ("k", "q", "meta_batch", "steps", "val_episodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"meta.{name} must be at least 1, got {getattr(self, name)}.")
        if not self.outer_lr > 0:
            raise ConfigError(f"meta.outer_lr must be positive, got {self.outer_lr}.")
        if not self.query_identity >= 0:
            raise ConfigError(f"meta.query_identity must be >= 0, got {self.query_identity}.")
        if not self.query_frames >= 0:
            raise ConfigError(f"meta.query_frames must be >= 0, got {self.query_frames}.")
        if not self.query_verifier >= 0:
            raise ConfigError(f"meta.query_verifier must be >= 0, got {self.query_verifier}.")
        if self.query_verifier and self.algo == "reptile":
            raise ConfigError("meta.query_verifier is a term of the outer objective, which "
                              "Reptile does not have; use algo fomaml or maml, or set it to 0.")
        if not 0 <= self.warp_tasks <= 1:
            raise ConfigError(f"meta.warp_tasks is a share of the training tasks, in 0..1; got "
                              f"{self.warp_tasks}.")
        if not 0 < self.warp_range < 1:
            raise ConfigError(f"meta.warp_range must be in (0, 1) (a log frequency factor); got "
                              f"{self.warp_range}.")
        if not self.query_support >= 0:
            raise ConfigError(f"meta.query_support must be >= 0, got {self.query_support}.")
        if self.query_support and self.algo == "reptile":
            raise ConfigError("meta.query_support is a term of the outer objective, which "
                              "Reptile does not have; use algo fomaml or maml, or set it to 0.")
        if self.query_frames and self.algo == "reptile":
            raise ConfigError("meta.query_frames is a term of the outer objective, which Reptile "
                              "does not have; use algo fomaml or maml, or set it to 0.")
        if any(not isinstance(n, int) or not 0 <= n <= self.inner.steps
               for n in self.query_steps):
            raise ConfigError(f"meta.query_steps must be inner step counts in 0..inner.steps "
                              f"({self.inner.steps}), got {list(self.query_steps)}.")
        if self.query_steps and self.algo == "reptile":
            raise ConfigError("meta.query_steps takes the query objective after several step "
                              "counts, which Reptile does not have; use algo fomaml or maml.")
        if self.outer_optimizer not in ("adam", "sgd"):
            raise ConfigError(f"meta.outer_optimizer must be adam or sgd, got "
                              f"{self.outer_optimizer!r}.")
        if not self.val_steps or min(self.val_steps) < 0:
            raise ConfigError(f"meta.val_steps must be step counts >= 0, got {self.val_steps}.")
        if isinstance(self.task_speakers, str) or any(
                not isinstance(t, str) or t.strip() in ("", "group:") for t in self.task_speakers):
            raise ConfigError("meta.task_speakers must be a list of speaker-name patterns or "
                              f"\"group:NAME\" entries, got {self.task_speakers!r}.")
        if (not self.outer_groups and not self.learn_inner_lrs) or (
                set(self.outer_groups) - set(GROUPS)):
            raise ConfigError(f"meta.outer_groups must name some of {', '.join(GROUPS)}, got "
                              f"{list(self.outer_groups)} (empty only with learn_inner_lrs: "
                              "then the rates alone learn).")
        if self.learn_inner_lrs and self.algo == "reptile":
            raise ConfigError("meta.learn_inner_lrs learns the inner step sizes through the query "
                              "loss, which Reptile does not use: use meta.algo 'maml' or "
                              "'fomaml'.")
        if self.learn_inner_lrs and self.inner.optimizer != "sgd" and not self.lrs_per_tensor:
            raise ConfigError("meta.learn_inner_lrs with an Adam inner loop learns one rate per "
                              "tensor: set meta.lrs_per_tensor true (or use inner SGD).")
        if not self.lrs_outer_lr > 0:
            raise ConfigError(f"meta.lrs_outer_lr must be positive, got {self.lrs_outer_lr}.")
        if self.algo == "maml" and self.inner.optimizer != "sgd":
            raise ConfigError("meta.algo 'maml' differentiates through the inner loop, which "
                              "needs meta.inner.optimizer 'sgd'; or use 'fomaml' / 'reptile'.")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    meta: MetaConfig | None = None  # present in meta-training runs and meta-learned checkpoints
    postfilter: PostFilterConfig = field(default_factory=PostFilterConfig)


def to_dict(config) -> dict:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls, values: dict, *, where: str = ""):
    """Build dataclass ``cls`` from ``values`` (a subset of its fields; missing ones default)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a JSON object, got {values!r}.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        section = where.rstrip(".") or "the top level"
        raise ConfigError(f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
                          f"{section} accepts {', '.join(sorted(names))}.")
    kwargs = {k: _convert(hints[k], v, where + k) for k, v in values.items()}
    return cls(**kwargs)


def _convert(hint, value, key: str):
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where=key + ".")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}.")
        items = args if args[-1] is not Ellipsis else (args[0],) * len(value)
        if len(items) != len(value):
            raise ConfigError(f"{key}: expected {len(items)} values, got {len(value)}.")
        return tuple(_convert(h, v, f"{key}[{i}]") for i, (h, v) in enumerate(zip(items, value)))
    if origin in (typing.Union, types.UnionType):  # only "X | None" (an optional section)
        options = [a for a in args if a is not type(None)]
        if len(options) != 1 or len(args) != 2:
            raise ConfigError(f"{key}: only optional (X | None) unions are supported in configs.")
        return None if value is None else _convert(options[0], value, key)
    ok = (isinstance(value, bool) if hint is bool else
          isinstance(value, int) and not isinstance(value, bool) if hint is int else
          isinstance(value, (int, float)) and not isinstance(value, bool) if hint is float else
          isinstance(value, hint))
    if not ok:
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}.")
    return float(value) if hint is float else value


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Defaults, then the JSON file at ``path``, then ``overrides`` (nested dicts)."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file.")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err}).") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text file; a config is a JSON file (see "
                              "configs/).") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object at the top level.")
    return from_dict(Config, _merge(values, overrides or {}))


def replace(config, **changes):
    """``dataclasses.replace`` that also takes nested dicts: replace(cfg, model={"hidden": 8})."""
    values = to_dict(config)
    return from_dict(type(config), _merge(values, changes))


def _merge(base: dict, extra: dict, where: str = "") -> dict:
    """``base`` with ``extra`` laid over it, section by section. A section given where ``base``
    holds a plain value is refused: the value would be lost without a word (``{"train": 5}``
    in a file, then ``--set train.steps=...``)."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and k in out and not isinstance(out[k], dict):
            raise ConfigError(f"{where}{k}: expected a JSON object (a section of settings), got "
                              f"{out[k]!r}.")
        out[k] = _merge(out[k], v, f"{where}{k}.") if isinstance(v, dict) and k in out else v
    return out
