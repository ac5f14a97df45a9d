"""The one inner loop: adapt a dict of parameters on a support set by gradient steps.

Meta-training (MAML, FOMAML, Reptile), test-time adaptation and the fine-tuning baseline all call
:func:`inner_loop`; they differ only in where the parameters start and how that start was learned.

The model is any ``nn.Module`` with ``loss(batch)`` returning an object with a scalar ``.total``;
a batch is whatever ``collate`` makes of a list of support items. The loss is a pure function of
``(params, batch)`` through ``torch.func.functional_call``: the adapted parameters replace the
model's of the same names for that call and the model itself is never modified.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value

from metatts.data.batch import Parts
from metatts.model.discriminator import CRITIC_TERMS, critic_terms
from metatts.model.config import LossConfig
from metatts.meta.inner_optim import FusedAdam, adam_init, adam_step, fusable, sgd_step
from metatts.meta.params import check_names
from metatts.meta.support import BATCHINGS, Batching, support_batches
from metatts.model.layers import higher_order
from metatts.model.losses import pool
from metatts.verifier import centroid as verifier_centroid
from metatts.verifier import distance as verifier_distance
from metatts.verifier import load as load_verifier

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
IDENTITY = "identity"  # the term of FastSpeech2.identity_distance (see InnerConfig.identity)
VERIFIER = "verifier"  # the term of metatts.verifier.distance (see InnerConfig.verifier)
# "bfloat16": each step's forward and backward under torch.autocast (matrix products and
# convolutions in bfloat16, parameters, gradients and optimizer state stay float32)
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")
# the names the steps may follow: the model's loss parts (one per weight of LossConfig) and the
# identity term; a part a model does not compute (e.g. pitch in a v1 model) is skipped at the step
LOSS_TERMS: tuple[str, ...] = (*(f.name for f in dataclasses.fields(LossConfig)), IDENTITY)
# parts a model computes only if its architecture has them (no postnet, no pitch or energy
# predictor, fixed durations without an aligner): named in terms, they are left out silently
OPTIONAL_PARTS: tuple[str, ...] = ("postnet", "pitch", "energy", "align", "binarization")


@dataclass(frozen=True)
class InnerConfig:
    groups: tuple[str, ...] = ("embedding",)  # parameter groups that adapt (model.parameter_groups())
    steps: int = 10
    lr: float = 1e-2
    optimizer: Literal["sgd", "adam"] = "sgd"
    batching: Batching = "full"  # full support set, one clip, or batch_size clips per step
    batch_size: int = 4  # clips per step when batching == "minibatch"
    betas: tuple[float, float] = (0.9, 0.999)  # Adam only
    eps: float = 1e-8  # Adam only
    seed: int | None = 0  # clip order and the model's randomness; None: from the global RNG
    # intelligibility guards (see metatts.adapt): a proximal pull of weight ``proximal`` toward
    # the start (the loss gains proximal/2 * ||params - start||^2), and the loss terms the steps
    # follow (names of LossOutput.parts, e.g. ("mel", "postnet"); empty: the model's whole loss)
    proximal: float = 0.0
    terms: tuple[str, ...] = ()
    # keep the voice's timing and prosody those of the start: the model's buffer
    # ``speaker.timing`` is set to the start's ``speaker.new`` (the duration, pitch and energy
    # predictors read it instead of the adapted vector; see FastSpeech2)
    lock_timing: bool = False
    precision: Literal["float32", "bfloat16"] = "float32"
    # weight of the identity term added to the loss the steps follow (0: none): how far the
    # spoken mels are from the clips' voice as the model's own speaker encoder hears it
    # (FastSpeech2.identity_distance; the name IDENTITY in ``terms`` selects it alone)
    identity: float = 0.0
    # weight of the verifier term (0: none): how far the spoken mels are from the clips' voice as
    # the corpus-trained speaker verifier hears it (metatts.verifier.distance), a model trained
    # to tell voices apart; ``verifier_dir`` names its folder (None: the shipped copy)
    verifier: float = 0.0
    verifier_dir: str | None = None
    # the verifier term is computed on every ``verifier_every``-th step only (the first, then
    # every n-th), the others follow the loss without it: the verifier's forward and backward
    # cost about a third of a step on 2 cores
    verifier_every: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.groups, str) or not all(isinstance(g, str) for g in self.groups):
            raise TypeError(f"groups must be a tuple of group names, got {self.groups!r}")
        if not self.groups:
            raise ValueError("groups is empty: name at least one parameter group to adapt")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        if self.batching not in BATCHINGS:
            raise ValueError(f"unknown batching {self.batching!r}; choose one of {BATCHINGS}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not all(0 <= b < 1 for b in self.betas) or len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not self.proximal >= 0:
            raise ValueError(f"proximal must be >= 0, got {self.proximal}")
        if isinstance(self.terms, str) or not all(isinstance(t, str) for t in self.terms):
            raise TypeError(f"terms must be a tuple of loss-term names, got {self.terms!r}")
        unknown = [t for t in self.terms if t not in LOSS_TERMS]
        if unknown:
            raise ValueError(f"unknown loss term(s) {unknown}; choose from "
                             f"{', '.join(LOSS_TERMS)}; for the whole loss give none (`adapt "
                             "--terms all`)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {PRECISIONS}")
        if not self.identity >= 0:
            raise ValueError(f"identity must be >= 0, got {self.identity}")
        if not self.verifier >= 0:
            raise ValueError(f"verifier must be >= 0, got {self.verifier}")
        if not isinstance(self.verifier_every, int) or self.verifier_every < 1:
            raise ValueError(f"verifier_every must be a whole number >= 1, got "
                             f"{self.verifier_every!r}")
        if self.identity and IDENTITY in self.terms:
            raise ValueError("give the identity term either as a weight (identity) or by name in "
                             "terms, not both")


@dataclass(frozen=True)
class InnerResult:
    params: dict[str, Tensor]  # the adapted parameters, same names and shapes as the start
    losses: list[float]  # support loss before each step, len == steps
    kept: dict[int, dict[str, Tensor]] = field(default_factory=dict)  # step -> params then
    fixed: dict[str, Tensor] = field(default_factory=dict)  # the constant values every step used


class _Loss(nn.Module):
    """``model.loss(batch).total`` as a module call, so that ``functional_call`` can swap params;
    with ``terms``, the weighted sum of those parts only (weights from ``model.loss_config``);
    plus ``identity`` times the identity term and ``verifier`` times the verifier term (see
    :class:`InnerConfig`). A :class:`~metatts.data.batch.Parts` batch is run part by part and
    its losses pooled."""

    def __init__(self, model: nn.Module, terms: Sequence[str] = (), identity: float = 0.0,
                 verifier: float = 0.0, verifier_dir: str | None = None) -> None:
        super().__init__()
        self.model, self.terms, self.identity = model, tuple(terms), identity
        self.verifier = verifier
        # a plain attribute, not a submodule: its weights are never among the swapped params
        self.__dict__["_verifier"] = load_verifier(verifier_dir) if verifier else None
        self._held: tuple[list[Tensor], Tensor] | None = None  # the last clips and centroid

    def _voice(self, batches: Sequence[Any]) -> Tensor:
        """The verifier's centroid of these real clips, computed again only when the clips
        change (full batching brings the same batches back at every step)."""
        mels = [b.mels for b in batches]
        if self._held is None or len(self._held[0]) != len(mels) or any(
                a is not b for a, b in zip(self._held[0], mels)):
            self._held = (mels, verifier_centroid(self._verifier, mels,
                                                  [b.mel_lengths for b in batches]))
        return self._held[1]

    def forward(self, batch: Any) -> Tensor:
        parts = list(batch) if isinstance(batch, Parts) else [batch]
        losses = [self.model.loss(part) for part in parts]
        # a support set split by length: the whole set's loss
        out = losses[0] if len(losses) == 1 else pool(losses, self.model.loss_config)
        extra = 0.0
        if self.identity or IDENTITY in self.terms:
            distance = self.model.identity_distance([o.output for o in losses],
                                                    [o.batch for o in losses])
            out = dataclasses.replace(out, parts={**out.parts, IDENTITY: distance})
            # named in terms it is one of them (weight 1); otherwise it is added at its weight
            extra = 0.0 if IDENTITY in self.terms else self.identity * distance
        if self.verifier:
            heard = verifier_distance(self._verifier, [o.output.spoken for o in losses],
                                      self._voice([o.batch for o in losses]),
                                      [o.batch.mel_lengths for o in losses])
            out = dataclasses.replace(out, parts={**out.parts, VERIFIER: heard})
            extra = extra + self.verifier * heard
        total = self._total(out, extra, losses)
        if self.verifier:  # the term's share as well, for the loss reported without it
            return total, (self.verifier * out.parts[VERIFIER]).detach()
        return total

    def _total(self, out: Any, extra: Any, losses: list) -> Tensor:
        """The loss the steps follow, of the parts ``out`` (of ``losses``) and the ``extra``
        terms' weighted sum."""
        if not self.terms:
            return out.total + extra
        if any(t in CRITIC_TERMS for t in self.terms):
            critic = getattr(self.model, "critic", None)
            if critic is None:
                raise ValueError(f"the inner loop's terms {self.terms} ask for the critic, and "
                                 "this checkpoint holds no discriminator (it was not trained "
                                 "with train.adversarial); leave critic_fm / critic_adv out.")
            found = critic_terms(critic, self.model.critic_window,
                                 [o.output for o in losses], [o.batch for o in losses])
            out = dataclasses.replace(out, parts={**out.parts, **found})
        present = [t for t in self.terms if t in out.parts]
        if not present:
            raise ValueError(f"none of the loss terms {self.terms} is computed for this batch; "
                             f"it has {sorted(out.parts)}")
        # a part the model's architecture lacks (pitch in a v1 model, a postnet) is skipped
        # quietly, as the shipped terms may name it; any other is worth a word
        missing = [t for t in self.terms if t not in out.parts and t not in OPTIONAL_PARTS]
        if missing:  # e.g. consistency, computed only in pretraining
            warnings.warn(f"loss term(s) {missing} are not computed for this batch and are left "
                          f"out of the steps, which follow {present} (it has "
                          f"{sorted(out.parts)})", stacklevel=2)
        weights = getattr(self.model, "loss_config", None)
        return sum(getattr(weights, t, 1.0) * out.parts[t] for t in present) + extra


def loss_fn(model: nn.Module, terms: Sequence[str] = (),
            fixed: Mapping[str, Tensor] | None = None, identity: float = 0.0,
            verifier: float = 0.0, verifier_dir: str | None = None, with_share: bool = False
            ) -> Callable[[Mapping[str, Tensor], Any], Tensor]:
    """``f(params, batch) -> scalar loss`` of ``model`` with ``params`` in place of its own.
    ``terms`` picks loss parts, ``identity`` and ``verifier`` weigh those terms (see
    :class:`InnerConfig`); ``fixed`` are further values (e.g. the buffer ``speaker.timing``)
    that replace the model's in every call but never move. With ``verifier`` and
    ``with_share``, ``f`` gives ``(loss, the verifier term's weighted share, detached)``."""
    module = _Loss(model, terms, identity, verifier, verifier_dir)
    constant = {f"model.{k}": v for k, v in (fixed or {}).items()}

    def f(params: Mapping[str, Tensor], batch: Any) -> Tensor:
        total = functional_call(module, {**constant, **{f"model.{k}": v for k, v in params.items()}},
                                (batch,))
        if verifier:  # (loss, the verifier term's share)
            total, share = total
            if with_share:
                return total, share
        if total.ndim != 0:
            raise ValueError(f"model.loss(batch).total must be a scalar, got shape "
                             f"{tuple(total.shape)}")
        return total

    return f


class _Spoken(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> Tensor:
        return self.model.loss(batch).output.spoken


def spoken_mels(model: nn.Module, params: Mapping[str, Tensor], batch: Any,
                fixed: Mapping[str, Tensor] | None = None) -> Tensor:
    """The (B, n_mels, T) mels ``model`` speaks for ``batch`` (teacher-forced, as its loss
    sees them) with ``params`` and ``fixed`` in place of its own values."""
    values = {f"model.{k}": v for k, v in {**(fixed or {}), **params}.items()}
    return functional_call(_Spoken(model), values, (batch,))


def arithmetic(precision: str, device: str | torch.device) -> contextlib.AbstractContextManager:
    """The context the steps compute in: autocast to bfloat16 on ``device``, or nothing."""
    if precision == "bfloat16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def inner_loop(
    model: nn.Module,
    params: Mapping[str, Tensor],
    support: Sequence[Any],
    collate: Callable[[list[Any]], Any],
    cfg: InnerConfig,
    *,
    lrs: Mapping[str, Tensor] | None = None,
    create_graph: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    keep: Collection[int] = (),
    fixed: Mapping[str, Tensor] | None = None,
) -> InnerResult:
    """Take ``cfg.steps`` optimizer steps on the support loss, starting from ``params``.

    ``params`` maps some of the model's parameter names to their starting values (see
    :func:`metatts.meta.initial_params`); only those move. ``lrs`` are Meta-SGD's learned
    per-parameter learning rates (same names; each of its parameter's shape, or (1, ..., 1): one
    per tensor, which with Adam scales the tensor's steps), used instead of ``cfg.lr``.

    ``create_graph=True`` keeps each inner gradient in the autograd graph so that the result can be
    differentiated through the whole loop (second-order MAML); otherwise gradients are constants,
    and the result depends on ``params`` and ``lrs`` only through the update sums (first-order),
    and not at all when neither requires grad. ``on_step(step, loss)`` is called after each step
    with the support loss that step saw. ``keep`` lists step counts (0..steps) whose parameters
    are returned in ``kept``: one run of n steps gives every shorter run of the same settings
    and seed, which takes the same first steps. ``fixed`` (see :func:`loss_fn`) are values that
    replace the model's in every step and do not adapt.
    """
    check_names(model, params)
    if lrs is not None:
        if set(lrs) != set(params):
            raise ValueError(f"lrs must name exactly the adapted parameters; "
                             f"missing {sorted(set(params) - set(lrs))}, "
                             f"extra {sorted(set(lrs) - set(params))}")
    if create_graph and cfg.precision != "float32":
        raise ValueError("second-order differentiation runs in float32; use precision='float32' "
                         "with create_graph")
    if create_graph and cfg.optimizer == "adam":
        raise ValueError("second-order differentiation through Adam is not supported; "
                         "use optimizer='sgd' for MAML, or a first-order method with Adam")

    bad = sorted(n for n in keep if not 0 <= n <= cfg.steps)
    if bad:
        raise ValueError(f"keep: step counts {bad} are outside 0..{cfg.steps}")
    fixed = dict(fixed or {})
    if cfg.lock_timing:
        if "speaker.new" not in params:
            raise ValueError("lock_timing needs 'speaker.new' among the adapted parameters")
        if not any(name == "speaker.timing" for name, _ in model.named_buffers()):
            raise ValueError(f"{type(model).__name__} has no speaker.timing buffer to lock the "
                             "timing with; adapt without lock_timing")
        fixed.setdefault("speaker.timing", params["speaker.new"].detach())
    plain_fn = grad_and_value(loss_fn(model, cfg.terms, fixed, cfg.identity))
    if cfg.verifier:  # the loss each step reports is without the verifier's term
        heard = grad_and_value(loss_fn(model, cfg.terms, fixed, cfg.identity, cfg.verifier,
                                       cfg.verifier_dir, with_share=True), has_aux=True)

        def grad_fn(params, batch):
            grads, (loss, share) = heard(params, batch)
            return grads, loss - share
    else:
        grad_fn = plain_fn
    params = dict(params)
    origin = {name: p.detach() for name, p in params.items()} if cfg.proximal else {}
    kept = {0: params} if 0 in keep else {}
    # Adam as one fused kernel where nothing is differentiated through the steps, else written out
    fused = (FusedAdam(params, cfg.lr, cfg.betas, cfg.eps)
             if cfg.optimizer == "adam" and fusable(params, lrs, create_graph) else None)
    state = adam_init(params) if cfg.optimizer == "adam" and fused is None else None
    losses: list[float] = []
    # second order: the model's forward must stay differentiable twice (written-out attention)
    twice = higher_order() if create_graph else contextlib.nullcontext()
    cast = arithmetic(cfg.precision, next(iter(params.values())).device if params else "cpu")
    with _seeded(cfg.seed, params.values()) as generator, twice:
        batches = support_batches(support, collate, cfg.batching, cfg.batch_size, generator)
        for step in range(cfg.steps):
            with torch.set_grad_enabled(create_graph), cast:  # no outer graph of the backward
                # the verifier's term on every verifier_every-th step only
                step_fn = grad_fn if step % cfg.verifier_every == 0 else plain_fn
                grads, loss = step_fn(params, next(batches))
            loss = loss.float()
            if cfg.proximal:  # d/dp of proximal/2 * ||p - start||^2
                grads = {n: g + cfg.proximal * (params[n] - origin[n]) for n, g in grads.items()}
            if fused is not None:  # moves its own copies in place
                params = fused.step(grads)
            else:
                if state is None:
                    updates = sgd_step(grads, cfg.lr, lrs)
                else:
                    updates, state = adam_step(grads, state, cfg.lr, cfg.betas, cfg.eps, lrs)
                params = {name: p - updates[name] for name, p in params.items()}
            losses.append(loss.item())
            if step + 1 in keep:
                # the fused steps move the same tensors: a copy, but for the last (the result)
                kept[step + 1] = ({name: p.clone() for name, p in params.items()}
                                  if fused is not None and step + 1 < cfg.steps else params)
            if on_step is not None:
                on_step(step, losses[-1])
    return InnerResult(params=params, losses=losses, kept=kept, fixed=fixed)


@contextlib.contextmanager
def _seeded(seed: int | None, tensors: Iterable[Tensor]) -> Iterator[torch.Generator]:
    """A generator for clip order; with a seed, the model's own randomness (dropout) is seeded
    too and the global RNG state is restored afterwards."""
    generator = torch.Generator()
    if seed is None:
        generator.manual_seed(int(torch.randint(2 ** 62, ())))
        yield generator
        return
    generator.manual_seed(seed)
    cuda = sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield generator
