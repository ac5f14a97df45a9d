"""Test-time adaptation: a few clips of a new voice in, a :class:`~metatts.voice.Voice` out.

The clips' features are computed once; then the shared inner loop
(:func:`metatts.meta.inner_loop`) takes ``steps`` gradient steps on their loss, moving only the
parameters of the chosen groups and starting from

- ``init="meta"``: a meta-learned checkpoint's values, its new-speaker embedding included, with
  the inner-loop settings it was meta-trained with as defaults;
- ``init="pretrained"``: the pretrained checkpoint's values, the new-speaker embedding set to the
  mean of the training speakers' (the fine-tuning baseline; SGD or Adam).

The new-voice vector itself starts (``start``) from the checkpoint's learned ``speaker.new``
("learned"), the mean of the training speakers ("mean"), or, for a model with a speaker encoder,
the encoder's vector of the clips ("encoder": zero-shot; ``steps=0`` gives exactly that voice).
"auto" is "encoder" for a checkpoint meta-trained from the encoder, "learned" for another
meta-learned one and "mean" for a pretrained one. Guards that keep speech intelligible while the
voice is fitted: ``lock_timing`` (durations, pitch and energy stay the start voice's),
``proximal`` (a pull back toward the start), ``terms`` (follow only some loss terms, e.g. the
mel), ``early_stop`` (one support clip is held out and the step count with its lowest loss is
kept).

After the last step the voice keeps its clips' frame bank (``frames``, on by default:
:mod:`metatts.frames`): the model's teacher-forced rendering of each clip beside the clip's own
frames, which corrects every frame the voice speaks.

The model runs in eval mode (no dropout) and is never modified: the voice is the adapted values.

    selection = load_clips(["a.wav", "b.wav"])          # transcripts from a.txt, or Whisper
    base = load_base("pretrained")
    result = adapt(selection.clips, base, default_settings("pretrained", base))
    result.voice.save("voice.safetensors")
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metatts import audio
from metatts.data.batch import Batch, Example, Parts, split_collate
from metatts.data.pitch import voice_stats
from metatts.frames import DEFAULT_KEY as DEFAULT_FRAMES_KEY
from metatts.frames import KEYS as FRAME_KEYS
from metatts.frames import NEIGHBOURS as FRAME_NEIGHBOURS
from metatts.frames import UPPER_NEIGHBOURS as FRAME_UPPER_NEIGHBOURS
from metatts.frames import FrameBank, frame_bank
from metatts.meta import InnerConfig, inner_loop, initial_params, loss_fn
from metatts.meta.inner_loop import arithmetic
from metatts.meta.support import fixed_alignment, fixed_text_states, split_long
from metatts.model.checkpoint import (SHIPPED, Checkpoint, CheckpointError, find_checkpoint,
                                      load_checkpoint, shipped_checkpoint)
from metatts.model.discriminator import CRITIC_TERMS
from metatts.model.fastspeech2 import NEW_SPEAKER
from metatts.text import TextError, text_to_ids
from metatts.text.normalize import PUNCTUATION
from metatts.vocoder import native_bf16
from metatts.voice import Voice, base_model, make_voice

INITS = ("meta", "pretrained")
STARTS = ("auto", "learned", "mean", "encoder")
MIN_PIECE_FRAMES = 50  # shorter pieces would cut most words
CHECKPOINTS = SHIPPED  # shipped checkpoints: <init>/ inside
MAX_CLIP_SECONDS = 30.0  # longer clips are left out (and Whisper reads at most 30 s)
ASR_MODEL = "tiny.en"
# a second opinion for transcripts the first model is unsure of (see asr.transcribe_rechecked)
RECHECK_MODEL, RECHECK_BELOW = "base", 0.8
# Whisper tiny.en confidences measured on the speech fixtures: 0.69-0.98; on 3 s of white
# noise 0.20 ("You"), on a 220 Hz tone 0.44 ("you").
MIN_CONFIDENCE = 0.5


class AdaptError(ValueError):
    """Adaptation cannot run: no usable clips, a transcript that does not fit its clip, no
    meta-learned checkpoint, or a loss that diverged."""


@dataclass(frozen=True)
class Clip:
    name: str  # for messages (a file name)
    wav: np.ndarray  # (T,) float32 at audio.SAMPLE_RATE, trimmed and loudness-normalized
    text: str  # what is said

    @property
    def seconds(self) -> float:
        return len(self.wav) / audio.SAMPLE_RATE


def make_clip(wav: np.ndarray, sample_rate: int, text: str, name: str = "clip") -> Clip:
    """A clip from a waveform (T,) at any rate: checked, resampled, trimmed and normalized."""
    wav = audio.resample(audio.check_audio(wav, sample_rate, name=name), sample_rate,
                         audio.SAMPLE_RATE)
    return Clip(name, audio.normalize_loudness(audio.trim_silence(wav, audio.SAMPLE_RATE)), text)


@dataclass(frozen=True)
class LeftOut:
    name: str
    reason: str  # a sentence saying why and what to do


@dataclass(frozen=True)
class ClipSelection:
    clips: tuple[Clip, ...]  # usable, in the order given
    left_out: tuple[LeftOut, ...]


def load_clips(paths: Sequence[str | Path], *, asr_model: str = ASR_MODEL,
               min_confidence: float = MIN_CONFIDENCE,
               recheck_model: str | None = RECHECK_MODEL,
               recheck_below: float = RECHECK_BELOW) -> ClipSelection:
    """Prepare audio files for adaptation. A clip's transcript is the same-name ``.txt`` beside
    it; without one, Whisper (``asr_model``) transcribes it, ``recheck_model`` gives a second
    opinion where the first is below ``recheck_below`` (the more confident one is kept), and a
    clip whose transcript is empty or below ``min_confidence`` is left out, as is audio that
    cannot be read or is too long."""
    clips: dict[int, Clip] = {}
    left: dict[int, LeftOut] = {}
    unheard: list[tuple[int, Path, np.ndarray]] = []
    for i, path in enumerate(map(Path, paths)):
        try:
            wav = audio.prepare_clip(path)
        except audio.AudioError as err:
            left[i] = LeftOut(path.name, str(err))
            continue
        if len(wav) > MAX_CLIP_SECONDS * audio.SAMPLE_RATE:
            seconds = len(wav) / audio.SAMPLE_RATE
            left[i] = LeftOut(path.name, f"{seconds:.0f} s of speech; clips must be at most "
                                         f"{MAX_CLIP_SECONDS:.0f} s. Cut it into sentences.")
            continue
        transcript = path.with_suffix(".txt")
        if not transcript.is_file():
            unheard.append((i, path, wav))
            continue
        try:
            text = transcript.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            left[i] = LeftOut(path.name, f"its transcript {transcript.name} is not UTF-8 text. "
                                         "Save it as UTF-8, or delete it to let Whisper "
                                         "transcribe.")
            continue
        if text:
            clips[i] = Clip(path.name, wav, text)
        else:
            left[i] = LeftOut(path.name, f"its transcript {transcript.name} is empty. Write what "
                                         "is said in it, or delete it to let Whisper transcribe.")
    if unheard:
        from metatts.asr import transcribe_rechecked  # loads transformers: only when needed

        heard = transcribe_rechecked([w for _, _, w in unheard], audio.SAMPLE_RATE,
                                     model=asr_model, recheck_model=recheck_model,
                                     recheck_below=recheck_below)
        for (i, path, wav), t in zip(unheard, heard):
            reason = transcript_problem(t.text, t.confidence, min_confidence)
            if reason is None:
                clips[i] = Clip(path.name, wav, t.text)
            else:
                left[i] = LeftOut(path.name, f"{reason} Put the transcript in "
                                             f"{path.with_suffix('.txt').name} beside it.")
    return ClipSelection(tuple(clips[i] for i in sorted(clips)),
                         tuple(left[i] for i in sorted(left)))


def transcript_problem(text: str, confidence: float, min_confidence: float) -> str | None:
    """Why a Whisper transcript cannot be trusted for adaptation, or None if it can."""
    if not any(c.isalpha() for c in text):
        return f"Whisper heard no words in it ({text!r})."
    if confidence < min_confidence:
        return (f"Whisper is unsure of its transcript {text!r} (confidence {confidence:.2f} < "
                f"{min_confidence:.2f}).")
    return None


# Steps every start takes by default (the app's too). A meta-learned checkpoint was meta-trained
# with fewer (configs/meta_v2_decoder.json: 5), but its voice keeps getting closer with WER held
# since the steps leave the duration predictor alone. The full preset on the shipped pair
# (results/eval_full, meta, k = 5, 105 clips per natural cell, 15 real): ECAPA after 20 / 50 /
# 100 steps natural 0.635 / 0.701 / 0.722, real 0.571 / 0.593 / 0.609; WER natural 2.7 / 3.2 /
# 3.4 % (1.9 % at 0), real 0.4 / 0.8 / 0.8 %; DNSMOS 3.19 / 3.20 / 3.19; mean time 4.1 / 9.7 /
# 18.9 s on 2 cores shared with the judges. 50 keeps most of what 100 adds at half its time (it
# was 20 while WER rose past 20 steps; the previous pair's run, results/eval_full_4250, read the
# same way).
ADAPT_STEPS = 50


@dataclass(frozen=True)
class AdaptSettings:
    """How to adapt. See :func:`default_settings` for the defaults of each ``init``."""

    init: str = "pretrained"  # "meta" or "pretrained" (see the module docstring)
    # parameter groups that adapt (model.parameter_groups): the speaker vector and the
    # conditional norms (AdaSpeech), the same groups meta-learning adapts by default
    groups: tuple[str, ...] = ("embedding", "conditional_norms")
    steps: int = ADAPT_STEPS
    lr: float = 1e-2
    optimizer: str = "adam"  # "sgd" or "adam"
    batching: str = "full"  # "full" (every clip every step), "stochastic", "minibatch"
    batch_size: int = 4  # clips per step with "minibatch"
    seed: int = 0  # clip order for stochastic batching: the same seed gives the same voice
    # step with the checkpoint's Meta-SGD rates (one per parameter element) instead of ``lr``
    learned_lrs: bool = False
    start: str = "auto"  # where speaker.new starts: see the module docstring
    proximal: float = 0.0  # pull toward the start: loss + proximal/2 * ||params - start||^2
    terms: tuple[str, ...] = ()  # loss terms followed (e.g. ("mel", "postnet")); empty: all
    lock_timing: bool = False  # durations, pitch and energy stay those of the start voice
    early_stop: bool = False  # hold out one clip; keep the step count where its loss is lowest
    # clips longer than this many mel frames step as pieces of whole tokens (metatts.meta.support
    # .split_long): the same frames and tokens, shorter attention, faster steps; 0: whole clips
    piece_frames: int = 0
    # "bfloat16": the steps under torch.autocast (see metatts.meta.inner_loop.PRECISIONS),
    # 1.24x faster on this project's CPUs; default_settings takes fast_precision()
    precision: str = "float32"
    # weight of the identity term (metatts.meta.inner_loop.InnerConfig.identity): the steps also
    # pull the voice toward the clips' as the model's own speaker encoder hears it; 0: off
    identity: float = 0.0
    # weight of the verifier term (metatts.meta.inner_loop.InnerConfig.verifier): the steps also
    # pull the voice toward the clips' as the corpus-trained speaker verifier hears it; 0: off
    verifier: float = 0.0
    verifier_every: int = 1  # ... computed on every n-th step only (InnerConfig.verifier_every)
    # the voice carries its clips' frame bank (metatts.frames): every frame it speaks is
    # corrected by the clips' own; built once after the last step
    frames: bool = True
    # what frame matching compares (metatts.frames.KEYS): the decoder's hidden states (a third
    # tensor in the bank; metatts.frames.DEFAULT_KEY) or the log-mel
    frames_key: str = DEFAULT_FRAMES_KEY
    # how many twin frames a match averages (metatts.frames.NEIGHBOURS)
    frames_neighbours: int = FRAME_NEIGHBOURS
    # ... in the mel bins from metatts.frames.UPPER_BIN up (2.5 kHz); 0: frames_neighbours there too
    frames_upper: int = FRAME_UPPER_NEIGHBOURS

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose one of {INITS}")
        if self.start not in STARTS:
            raise ValueError(f"unknown start {self.start!r}; choose one of {STARTS}")
        if self.learned_lrs and self.init != "meta":
            raise ValueError("learned_lrs (the meta-learned inner rates) needs init 'meta'; give "
                             "a learning rate instead to adapt another way.")
        if not isinstance(self.piece_frames, int) or not (
                self.piece_frames == 0 or self.piece_frames >= MIN_PIECE_FRAMES):
            raise ValueError(f"piece_frames must be 0 (whole clips) or at least "
                             f"{MIN_PIECE_FRAMES} mel frames, got {self.piece_frames!r}.")
        if not isinstance(self.frames_neighbours, int) or self.frames_neighbours < 1:
            raise ValueError(f"frames_neighbours must be a whole number >= 1, got "
                             f"{self.frames_neighbours!r}")
        if not isinstance(self.frames_upper, int) or self.frames_upper < 0:
            raise ValueError(f"frames_upper must be 0 (as frames_neighbours) or a whole number "
                             f">= 1, got {self.frames_upper!r}")
        if self.frames_key not in FRAME_KEYS:
            raise ValueError(f"unknown frames_key {self.frames_key!r}; choose one of "
                             f"{FRAME_KEYS}")
        self.inner()  # validates the rest

    def inner(self) -> InnerConfig:
        return InnerConfig(groups=tuple(self.groups), steps=self.steps, lr=self.lr,
                           optimizer=self.optimizer, batching=self.batching,
                           batch_size=self.batch_size, seed=self.seed, proximal=self.proximal,
                           terms=tuple(self.terms), lock_timing=self.lock_timing,
                           precision=self.precision, identity=self.identity,
                           verifier=self.verifier, verifier_every=self.verifier_every)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "groups": list(self.groups),
                "terms": list(self.terms)}


def meta_inner_config(base: Checkpoint) -> InnerConfig | None:
    """The inner-loop settings a meta-learned checkpoint was meta-trained with
    (``config.meta.inner``), or None for a checkpoint that was not meta-learned."""
    inner = getattr(getattr(base.config, "meta", None), "inner", None)
    if inner is None or isinstance(inner, InnerConfig):
        return inner
    values = {f.name: getattr(inner, f.name) for f in dataclasses.fields(InnerConfig)
              if hasattr(inner, f.name)}  # e.g. a meta-training config with more fields
    return InnerConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# Fine-tuning from the speaker encoder's estimate (init "pretrained", start "encoder"): the
# estimate already speaks the voice, so the steps must be small. Measured on the v2 model:
# - benchmarks/inner_rate.py (8 validation voices, query loss at 0 / 5 / 10 / 20 steps): Adam
#   0.01 on the speaker vector + adapters overshoots (3.196 -> 3.512 at 5 steps); in
#   `python -m eval` it broke the speech (WER 136-154 % on engine voices at 10-20 steps).
# - `python -m eval` at 5 shots (results/eval_k5_capacity*, docs/experiments.md,
#   "Adaptation capacity"):
#   adapting the whole decoder with Adam 0.0005 and the timing locked reaches ECAPA 0.526 / 0.582
#   after 20 steps on natural / real voices, against 0.350 / 0.415 with the speaker vector +
#   adapters at 0.001, with WER within a few points (natural 1.7 %, real 3.9 %) and lower DNSMOS
#   on natural voices (2.80 against 2.90 at 20 steps).
# It is the inner loop of the shipped meta-learned start (configs/meta_v2_decoder.json): this
# is its "zero-shot + fine-tune" twin without meta-training.
ENCODER_FINETUNE = {"lr": 5e-4, "groups": ("decoder",), "lock_timing": True,
                    "terms": ("mel", "postnet", "pitch", "energy")}

# Clips longer than 400 mel frames (4.6 s) step as pieces of whole words (AdaptSettings
# .piece_frames). Measured on 5 clips x 20 steps from the encoder start: 1.25-1.30x faster in
# benchmarks/adapt_speed.py; in `python -m eval --shots 5 --steps 0,10,20 --tasks 1
# --test-sentences 3 --speakers 3 --methods meta meta:piece_frames=400` (results/eval_k5_pieces)
# ECAPA at 10 / 20 steps 0.495 / 0.573 against 0.508 / 0.577 whole on natural voices (9 clips
# each), 0.497 / 0.593 against 0.488 / 0.576 on the real voice (3), WER and DNSMOS within
# noise (Holm p >= 0.25 on every paired cell).
PIECE_FRAMES = 400
# The support set steps as parts of similar length only where one padded batch would pad more
# than half its frames (split_collate's waste): with pieces of at most PIECE_FRAMES, fewer and
# larger products beat less padding. 5 clips x 20 steps, encoder start, 2 cores
# (benchmarks/adapt_speed.py; docs/experiments.md, "Faster steps"): waste 0.5 against
# 0.1, 0.80-0.93x the time on three voices; one batch always (waste 10) no faster.
PIECE_WASTE = 0.5

def fast_precision(device: str | torch.device = "cpu") -> str:
    """"bfloat16" where ``device`` multiplies bfloat16 natively (a CPU with AVX512-BF16 or
    AMX-BF16, a CUDA GPU that supports it), else "float32": the faster arithmetic for the steps
    (``AdaptSettings.precision``; ``python benchmarks/adapt_speed.py`` measures both)."""
    device = torch.device(device)
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device.type == "cpu" and native_bf16() else "float32"


def default_settings(init: str, base: Checkpoint, start: str | None = None) -> AdaptSettings:
    """``meta``: the inner loop the checkpoint was meta-trained with; ``pretrained``: Adam on the
    speaker embedding and the conditional norms at lr 0.01 (:class:`AdaptSettings`' defaults),
    or, with ``start="encoder"``, :data:`ENCODER_FINETUNE` from the encoder's estimate (and the
    critic's terms, :data:`CRITIC_TERMS`, where the checkpoint carries a discriminator). ``start``
    (see :data:`STARTS`) otherwise only sets where the vector starts. Every init takes
    :data:`ADAPT_STEPS` steps, long clips in pieces (:data:`PIECE_FRAMES`), in the arithmetic
    :func:`fast_precision` picks for the model's device."""
    if start is not None and start not in STARTS:
        raise ValueError(f"unknown start {start!r}; choose one of {STARTS}")
    fast = fast_precision(next(base.model.parameters()).device)
    if init == "pretrained":
        if start == "encoder":
            settings = dict(ENCODER_FINETUNE)
            if getattr(base.model, "critic", None) is not None:  # adversarially trained
                settings["terms"] = settings["terms"] + CRITIC_TERMS
            return AdaptSettings(start="encoder", piece_frames=PIECE_FRAMES, precision=fast,
                                 **settings)
        return AdaptSettings(start=start or "auto", piece_frames=PIECE_FRAMES, precision=fast)
    if init != "meta":
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    inner = meta_inner_config(base)
    if inner is None:
        raise AdaptError(_not_meta_learned(base.path))
    return AdaptSettings(init="meta", groups=inner.groups, lr=inner.lr,
                         optimizer=inner.optimizer, batching=inner.batching,
                         batch_size=inner.batch_size, learned_lrs=base.inner_lrs is not None,
                         proximal=inner.proximal, terms=tuple(inner.terms),
                         lock_timing=inner.lock_timing, start=start or "auto",
                         piece_frames=PIECE_FRAMES, precision=fast,
                         identity=inner.identity, verifier=inner.verifier,
                         verifier_every=inner.verifier_every)


def with_changes(settings: AdaptSettings, **changes) -> AdaptSettings:
    """``settings`` with ``changes`` (None values ignored). A new learning rate or optimizer
    replaces Meta-SGD's learned rates: the user's rate is the one used."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if "lr" in changes or changes.get("optimizer", settings.optimizer) != settings.optimizer:
        changes.setdefault("learned_lrs", False)
    return dataclasses.replace(settings, **changes)


def _not_meta_learned(path: str | Path | None) -> str:
    where = f"{path} is not" if path else "this checkpoint is not"
    return (f"init 'meta' needs a meta-learned checkpoint, and {where} one (its config has no "
            "meta.inner settings). Meta-train one with `python -m metatts train` and a "
            "meta-learning config, then pass it with --checkpoint; or use --init pretrained "
            "for the fine-tuning baseline.")


def default_checkpoint(init: str) -> Path:
    """Where the shipped checkpoint for ``init`` lives (see
    :func:`metatts.model.checkpoint.shipped_checkpoint`)."""
    return shipped_checkpoint(init, CHECKPOINTS)


def load_base(init: str, checkpoint: str | Path | None = None,
              device: str | torch.device = "cpu") -> Checkpoint:
    """Load the checkpoint to adapt from: ``checkpoint`` if given, else the shipped one for
    ``init``. For ``meta`` it must be meta-learned (:class:`AdaptError` says how to get one)."""
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint(init)
    if init == "meta" and checkpoint is None:
        try:
            find_checkpoint(path)
        except CheckpointError:
            raise AdaptError(f"no meta-learned checkpoint is available (looked in {path}). "
                             "Meta-train one with `python -m metatts train` and a meta-learning "
                             "config and pass it with --checkpoint, or use --init pretrained for "
                             "the fine-tuning baseline.") from None
    base = load_checkpoint(path, device)
    if init == "meta" and meta_inner_config(base) is None:
        raise AdaptError(_not_meta_learned(base.path))
    return base


def word_boundaries(symbols) -> list[int]:
    """Ids of the symbols a clip is best cut after: spaces and punctuation."""
    return [i for i, sym in enumerate(symbols.symbols) if not sym.strip() or sym in PUNCTUATION]


# a transcript with fewer text symbols than this per second of speech leaves words out:
# clips of the evaluation speakers and test fixtures have 11.4-40 (median 18.7, 252 clips);
# low enough for a short word in a clip whose noisy ends were not trimmed ("Yes." in 2.5 s)
MIN_SYMBOLS_PER_SECOND = 2.0


def support_examples(clips: Sequence[Clip], base: Checkpoint) -> list[Example]:
    """Model inputs of the clips, with the checkpoint's text mode and symbol table: (80, T)
    log-mels and token ids, speaker NEW_SPEAKER. :class:`AdaptError` names a clip whose
    transcript does not fit it (:func:`fitting_clips` leaves such clips out instead)."""
    examples = []
    for clip in clips:
        ids, mel = _clip_inputs(clip, base)
        f0 = None
        if getattr(base.model.config, "pitch", False):  # the pitch model trains on frame F0
            from metatts.data.pitch import extract_f0

            f0 = extract_f0(clip.wav, frames=mel.shape[-1])
        examples.append(Example(clip.name, NEW_SPEAKER, torch.as_tensor(ids, dtype=torch.long),
                                mel, f0=f0))
    return examples


def fitting_clips(clips: Sequence[Clip], base: Checkpoint) -> tuple[list[Clip], list[LeftOut]]:
    """The clips whose transcripts fit them for ``base`` (words it can read, not too many or too
    few symbols for the clip's length), and the others with the reason: for a caller that
    leaves a clip out rather than stop (``adapt`` and ``synthesize --reference`` on the
    command line; the app asks the person to fix the transcript instead)."""
    fit, left = [], []
    for clip in clips:
        try:
            _clip_inputs(clip, base)
            fit.append(clip)
        except AdaptError as err:
            left.append(LeftOut(clip.name, str(err).removeprefix(f"{clip.name}: ")))
    return fit, left


def _clip_inputs(clip: Clip, base: Checkpoint) -> tuple[list[int], torch.Tensor]:
    """(token ids, (80, T) log-mel) of a clip; :class:`AdaptError` when its transcript does not
    fit it."""
    try:
        ids = text_to_ids(clip.text, mode=base.config.data.tokens, table=base.symbols)
    except TextError as err:
        raise AdaptError(f"{clip.name}: {err}") from None
    mel = audio.mel_spectrogram(clip.wav)  # (N_MELS, T)
    if mel.shape[-1] < len(ids):
        raise AdaptError(f"{clip.name}: its transcript has {len(ids)} symbols but the clip "
                         f"only {mel.shape[-1]} frames ({clip.seconds:.2f} s of speech); "
                         "the transcript does not belong to this clip.")
    if len(ids) < MIN_SYMBOLS_PER_SECOND * clip.seconds:
        raise AdaptError(f"{clip.name}: its transcript {clip.text!r} has {len(ids)} symbols "
                         f"for {clip.seconds:.2f} s of speech, too few to be what is said "
                         "in it; write every word said in the clip.")
    return ids, mel


def resolved_start(base: Checkpoint, settings: AdaptSettings) -> str:
    """The start ("learned", "mean" or "encoder") that ``settings.start`` means for ``base``."""
    start = settings.start
    if start == "auto":
        meta = getattr(base.config, "meta", None)
        if settings.init == "meta":
            start = getattr(meta, "start", "learned") or "learned"
        else:
            start = "mean"
    if start == "encoder" and base.model.speaker_encoder is None:
        raise AdaptError("start 'encoder' needs a model with a speaker encoder, and this "
                         "checkpoint has none (a previous-generation model); use start 'mean' "
                         "or 'learned'.")
    if start == "learned" and settings.init == "pretrained":
        raise AdaptError("start 'learned' is the meta-learned vector of a meta-learned "
                         "checkpoint; with init 'pretrained' use start 'mean' or 'encoder'.")
    return start


def start_params(base: Checkpoint, settings: AdaptSettings,
                 support: Sequence[Example] = (),
                 mels: Sequence[torch.Tensor] = ()) -> dict[str, torch.Tensor]:
    """Detached copies of the parameters that adapt, where adaptation starts. The "encoder"
    start encodes ``mels`` ((80, T) log-mels of the clips, no transcript needed) or, when none
    are given, the mels of ``support`` (the clips' examples)."""
    params = initial_params(base.model, settings.groups, detach=True)
    start = resolved_start(base, settings)
    if start == "mean":  # the baseline: the mean of the training speakers
        params["speaker.new"] = base.model.speaker.table.weight.detach().mean(0).clone()
    elif start == "encoder":
        mels = list(mels) or [x.mel for x in support]
        if not mels:
            raise AdaptError("start 'encoder' needs the clips to encode.")
        with _eval_mode(base.model):
            params["speaker.new"] = base.model.encode_speaker(mels).clone()
    return params


@dataclass(frozen=True)
class Progress:
    step: int  # steps done, 1..steps
    steps: int
    loss: float  # the support loss that step saw


@dataclass(frozen=True)
class Kept:
    """The parameters after ``steps`` steps of a longer adaptation (``adapt(..., keep=...)``)."""

    steps: int
    params: dict[str, torch.Tensor]
    loss: float  # support loss at these parameters, on the batch the next step used (all clips
    # with full batching, and after the last step)
    seconds: float  # wall time from the start of adapt() to this step, features included
    stopped_at: int | None = None  # the step count these parameters are from (early_stop)
    frames: FrameBank | None = None  # the clips' frame bank at these parameters (settings.frames)
    # the process's CPU time over the same span (every thread's; unlike ``seconds``, not counting
    # time the process was paused or waited for the cores)
    cpu_seconds: float | None = None


@dataclass(frozen=True)
class Adaptation:
    voice: Voice
    losses: list[float]  # support loss before each step
    final_loss: float  # support loss (all clips) at the adapted parameters
    seconds: float  # wall time of adapt(), features included
    kept: dict[int, Kept] = dataclasses.field(default_factory=dict)  # see adapt(keep=...)
    start: str = ""  # the start used: "learned", "mean" or "encoder"
    # early_stop: the held-out clip's loss after 0..steps steps, and the step count kept
    held_out_losses: list[float] = dataclasses.field(default_factory=list)
    stopped_at: int | None = None


def adapt(clips: Sequence[Clip], base: Checkpoint, settings: AdaptSettings,
          on_step: Callable[[Progress], None] | None = None,
          keep: Sequence[int] = ()) -> Adaptation:
    """Adapt ``base`` to the voice of ``clips`` and return the voice with its loss curve.

    ``on_step`` is called after every step (for a progress bar). Raises :class:`AdaptError` for
    no clips, a transcript that does not fit its clip, ``init="meta"`` on a checkpoint that was
    not meta-learned, or a loss that stops being finite (lower the learning rate).
    ``keep`` lists step counts (0..steps) whose parameters, support loss and elapsed time come
    back in ``kept``: the same as separate adaptations of that many steps, for the price of one
    (with ``early_stop``, each count keeps the step its own budget would have stopped at).
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    if not clips:
        raise AdaptError("no clips to adapt on; give at least one clip of speech with its "
                         "transcript.")
    if settings.init == "meta" and meta_inner_config(base) is None:
        raise AdaptError(_not_meta_learned(base.path))
    model = base.model
    device = next(model.parameters()).device
    support = examples = support_examples(clips, base)
    start_kind = resolved_start(base, settings)
    held_out: list[Example] = []
    if settings.early_stop:
        if len(support) < 2:
            raise AdaptError("early stopping holds out one clip to judge the steps by, so it "
                             "needs at least 2 clips; give more clips or adapt without it.")
        support, held_out = support[:-1], support[-1:]

    start = {k: v.to(device) for k, v in start_params(base, settings, support).items()}
    support = split_long(fixed_alignment(model, support, list(start), device),
                         settings.piece_frames, word_boundaries(base.symbols))
    held_out = fixed_alignment(model, held_out, list(start), device) if held_out else []
    # the text encoder's output, once, where the steps cannot change it
    support, held_out = (fixed_text_states(model, items, list(start), device,
                                           arithmetic(settings.precision, device))
                         for items in (support, held_out))

    # the voice's pitch statistics, of the clips the steps fit: every batch normalizes F0 by
    # them, where a batch of some clips (early stopping's held-out one, stochastic or minibatch
    # steps) would otherwise use its own (one batch of all of them computes the same numbers)
    f0 = [x.f0 for x in support if x.f0 is not None]
    stats = voice_stats(torch.cat(f0)) if f0 else None

    def batch(items: list[Example]) -> Batch | Parts:
        # clips of different lengths run as parts of similar length, pooled to the same loss
        # and gradients as one padded batch (benchmarks/adapt_speed.py)
        return split_collate(items, PIECE_WASTE, stats).to(device)

    elapsed = {0: time.perf_counter() - started}
    cpu = {0: time.process_time() - cpu_started}

    def step_done(step: int, loss: float) -> None:
        if not math.isfinite(loss):
            raise AdaptError(_diverged(loss, f"at step {step + 1}", settings.lr))
        elapsed[step + 1] = time.perf_counter() - started
        cpu[step + 1] = time.process_time() - cpu_started
        if on_step is not None:
            on_step(Progress(step + 1, settings.steps, loss))

    lrs = learned_rates(base, settings, start)
    judged: list[float] = []
    stopped = None
    with _eval_mode(model):
        result = inner_loop(model, start, support, batch, settings.inner(), on_step=step_done,
                            keep=range(settings.steps + 1) if held_out else keep, lrs=lrs)
        stops = {n: n for n in keep}  # kept step count -> the step count its params are from
        # the held-out and final losses in the steps' arithmetic and of the loss terms they
        # follow, so that a kept count's loss (seen by the next step) is the final loss of an
        # adaptation of that many steps, and the last loss continues the steps' curve
        with torch.no_grad(), arithmetic(settings.precision, device):
            if held_out:  # the held-out clip's loss after each step count; keep the lowest
                judge = loss_fn(model, settings.terms, fixed=result.fixed,
                                identity=settings.identity)
                judged = [float(judge(result.kept[n], batch(held_out)))
                          for n in range(settings.steps + 1)]
                stopped = min(range(len(judged)), key=lambda n: judged[n])
                # a shorter budget n would have stopped at the lowest loss among 0..n
                stops = {n: min(range(n + 1), key=lambda m: judged[m]) for n in keep}
                result = dataclasses.replace(result, params=result.kept[stopped],
                                             kept={n: result.kept[stops[n]] for n in keep})
            final = float(loss_fn(model, settings.terms, fixed=result.fixed,
                                  identity=settings.identity)(result.params, batch(support)))
    if not math.isfinite(final):
        raise AdaptError(_diverged(final, "after the last step", settings.lr))
    params = {**result.params, **result.fixed}
    key = settings.frames_key
    bank = frame_bank(base, params, examples, key=key, neighbours=settings.frames_neighbours,
                      upper_neighbours=settings.frames_upper) if settings.frames else None
    voice = make_voice(params, base_model(base),
                       {**settings.to_dict(), "start": start_kind, "stopped_at": stopped},
                       [c.seconds for c in clips], result.losses, final, frames=bank)
    losses = list(result.losses) + [final]  # support loss at 0, 1, ..., steps steps
    kept = {n: Kept(n, {**p, **result.fixed}, losses[stops[n]], elapsed[n], stops[n],
                    None if not settings.frames else
                    bank if p is result.params else frame_bank(
                        base, {**p, **result.fixed}, examples, key=key,
                        neighbours=settings.frames_neighbours,
                        upper_neighbours=settings.frames_upper),
                    cpu[n])
            for n, p in result.kept.items()}
    return Adaptation(voice, list(result.losses), final, time.perf_counter() - started, kept,
                      start=start_kind, held_out_losses=judged, stopped_at=stopped)


def learned_rates(base: Checkpoint, settings: AdaptSettings,
                  start: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """Meta-SGD's rates for the adapted parameters when ``settings.learned_lrs``, else None."""
    if not settings.learned_lrs:
        return None
    if base.inner_lrs is None:
        raise AdaptError(f"{base.path or 'this checkpoint'} has no learned learning rates "
                         "(it was not meta-trained with meta.learn_inner_lrs); give a learning "
                         "rate instead.")
    if set(base.inner_lrs) != set(start):
        raise AdaptError(f"the checkpoint's learned learning rates are for the groups it was "
                         f"meta-trained on, not for {', '.join(settings.groups)}; adapt those "
                         "groups, or give a learning rate instead.")
    device = next(iter(start.values())).device
    return {name: r.to(device) for name, r in base.inner_lrs.items()}


def _diverged(loss: float, when: str, lr: float) -> str:
    return (f"the support loss became {loss} {when}: adaptation diverged. Lower the learning "
            f"rate (it was {lr:g}).")


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)
