"""Outer updates of meta-learning: MAML, first-order MAML and Reptile as meta-gradients.

A task is one training speaker's few-shot episode: a support set to adapt on and a query set to
judge the adapted model by. :func:`task_gradient` runs the shared inner loop on one task and returns
the meta-gradient with respect to the model's parameters (and Meta-SGD's rates); :func:`meta_gradient`
averages it over a meta-batch. Tasks are independent, so data-parallel training gives each process
a share of the meta-batch and all-reduces the task-weighted mean. Apply a meta-gradient with
:func:`write_grads` and any torch optimizer:

    mg = meta_gradient(model, tasks, collate, cfg, "maml")
    optimizer.zero_grad()
    write_grads(dict(model.named_parameters()), mg.grads)
    optimizer.step()

- ``maml``: second-order; differentiates the query loss through every inner step.
- ``fomaml``: the query gradient at the adapted parameters, the inner gradients taken as constants.
- ``reptile``: ``theta - phi`` for the adapted parameters; SGD with rate eps on it moves the start
  to ``theta + eps * (phi - theta)``. Parameters that do not adapt get no Reptile gradient.

MAML and FOMAML give a gradient to every model parameter that requires grad (the shared network
learns to be adapted, too); freeze parameters with ``requires_grad_(False)`` to keep them out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from metatts.meta.inner_loop import InnerConfig, inner_loop, loss_fn
from metatts.meta.params import initial_params

Algorithm = Literal["maml", "fomaml", "reptile"]
ALGORITHMS: tuple[str, ...] = ("maml", "fomaml", "reptile")


@dataclass(frozen=True)
class Task:
    support: Sequence[Any]  # items that collate into inner-loop batches
    query: Sequence[Any]  # items collated into one batch for the outer loss


# task -> start values computed from it (differentiable), replacing the model's of those names
StartFn = Callable[[Task], dict[str, Tensor]]


@dataclass(frozen=True)
class TaskGradient:
    grads: dict[str, Tensor]  # model parameter name -> meta-gradient (detached)
    lr_grads: dict[str, Tensor]  # adapted parameter name -> gradient of its Meta-SGD rates
    support_losses: list[float]  # inner-loop support loss per step
    query_loss: float  # query loss at the adapted parameters


@dataclass(frozen=True)
class MetaGradient:
    grads: dict[str, Tensor]  # mean over the tasks
    lr_grads: dict[str, Tensor]  # mean over the tasks
    tasks: int  # how many tasks the mean is over (weights for a cross-process mean)
    support_losses: list[list[float]]  # per task, per step
    query_losses: list[float]  # per task


def task_gradient(
    model: nn.Module,
    task: Task,
    collate: Callable[[list[Any]], Any],
    cfg: InnerConfig,
    algorithm: Algorithm,
    *,
    lrs: Mapping[str, Tensor] | None = None,
    on_step: Callable[[int, float], None] | None = None,
    start_fn: StartFn | None = None,
    fixed: Mapping[str, Tensor] | None = None,
    query_identity: float = 0.0,
    query_frames: float = 0.0,
    query_verifier: float = 0.0,
    query_steps: Sequence[int] = (),
    query_support: float = 0.0,
) -> TaskGradient:
    """The meta-gradient of one task, starting the inner loop from the model's current values.

    ``start_fn(task)`` gives start values computed from the task (e.g. the speaker encoder's
    vector of its support clips, for ``speaker.new``) that replace the model's: MAML and FOMAML
    differentiate the query loss through them into whatever computed them, and Reptile sends
    its difference ``start - adapted`` back through them. ``fixed``: see :func:`inner_loop`.
    ``query_identity`` weighs the identity term (:class:`InnerConfig`) in the query loss, the
    outer objective (Reptile has none: it only reports the query loss). ``query_frames`` weighs,
    likewise, the query clips' loss after frame matching on the support clips
    (:func:`metatts.frames.corrected_loss`), and ``query_verifier`` the query clips' verifier
    term (:class:`InnerConfig`; its verifier is ``cfg.verifier_dir``'s). ``query_steps``
    (MAML++'s multi-step loss, Antoniou et al., 2019) judges the adapted parameters after each
    of these step counts (0..cfg.steps) and takes the mean of those query objectives, so that
    the start is learned for every budget a user may adapt with, not for ``cfg.steps`` alone;
    empty: after the last step only. ``query_support`` weighs the support clips' own loss at
    the adapted parameters (the query loss's terms), added to each count's objective: how well
    the steps fit what they saw, beside how the voice says what they did not.

    Clip order and dropout come from the global RNG (seed it once in the trainer): ``cfg.seed``
    is for reproducible adaptation and would give every task of every meta-batch the same draws.
    """
    cfg = dataclasses.replace(cfg, seed=None)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown meta-learning algorithm {algorithm!r}; choose one of {ALGORITHMS}")
    if len(task.query) == 0:
        raise ValueError("the task's query set is empty; a meta-learning task needs query clips")
    counts = sorted(set(query_steps)) or [cfg.steps]
    if not all(0 <= n <= cfg.steps for n in counts):
        raise ValueError(f"query_steps {list(query_steps)} must be step counts in 0..{cfg.steps}")
    if algorithm == "reptile":
        if query_steps:
            raise ValueError("Reptile has no query objective to take after several step "
                             "counts; use 'maml' or 'fomaml' with query_steps")
        if query_frames or query_verifier or query_support:
            raise ValueError("Reptile has no outer objective to add the frames, verifier or "
                             "support term to; use 'maml' or 'fomaml' with query_frames / "
                             "query_verifier / query_support")
        return _reptile(model, task, collate, cfg, lrs, on_step, start_fn, fixed, query_identity)
    weights = {name: p for name, p in model.named_parameters() if p.requires_grad}
    rates = {name: r for name, r in (lrs or {}).items() if r.requires_grad}
    if not weights and not rates:
        raise ValueError("no model parameter (or learning rate) requires grad: nothing to meta-learn")
    with torch.enable_grad():
        start = initial_params(model, cfg.groups, detach=False)
        if start_fn is not None:
            start.update(start_fn(task))
        result = inner_loop(model, start, task.support, collate, cfg, lrs=lrs,
                            create_graph=algorithm == "maml", on_step=on_step, fixed=fixed,
                            keep=counts)
        queries = collate(list(task.query))
        objective = loss_fn(model, fixed=result.fixed, identity=query_identity,
                            verifier=query_verifier, verifier_dir=cfg.verifier_dir)
        if query_frames:
            from metatts.frames import corrected_loss
        if query_frames or query_support:
            support = collate(list(task.support))
        # the support clips' loss, the query's terms
        fit = loss_fn(model, fixed=result.fixed) if query_support else None
        parts = []
        for n in counts:
            part = objective(result.kept[n], queries)
            if query_frames:
                part = part + query_frames * corrected_loss(
                    model, result.kept[n], support, queries, fixed=result.fixed)
            if query_support:
                part = part + query_support * fit(result.kept[n], support)
            parts.append(part)
        query = parts[0] if len(parts) == 1 else torch.stack(parts).mean()
    found = torch.autograd.grad(query, [*weights.values(), *rates.values()], allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g
             for t, g in zip([*weights.values(), *rates.values()], found)]
    return TaskGradient(
        grads=dict(zip(weights, grads[:len(weights)])),
        lr_grads=dict(zip(rates, grads[len(weights):])),
        support_losses=result.losses,
        query_loss=query.item(),
    )


def _reptile(model, task, collate, cfg, lrs, on_step, start_fn, fixed, query_identity
             ) -> TaskGradient:
    if lrs is not None:
        raise ValueError("Reptile gives no gradient for learned learning rates; "
                         "use 'maml' or 'fomaml' with Meta-SGD")
    theta = initial_params(model, cfg.groups, detach=True)
    computed = {}
    if start_fn is not None:
        with torch.enable_grad():
            computed = start_fn(task)
        theta.update({name: value.detach() for name, value in computed.items()})
    result = inner_loop(model, theta, task.support, collate, cfg, on_step=on_step, fixed=fixed)
    with torch.no_grad():
        query = loss_fn(model, fixed=result.fixed, identity=query_identity)(
            result.params, collate(list(task.query)))
    grads = {name: theta[name] - phi for name, phi in result.params.items()}
    learners = {n: p for n, p in model.named_parameters() if p.requires_grad}
    # the start's move, sent back through what computed it (unless that is frozen)
    computed = {n: v for n, v in computed.items() if v.requires_grad}
    if computed and learners:
        found = torch.autograd.grad(list(computed.values()), list(learners.values()),
                                    grad_outputs=[grads[n] for n in computed], allow_unused=True)
        for (name, p), g in zip(learners.items(), found):
            if g is not None:
                grads[name] = grads[name] + g if name in grads else g
    return TaskGradient(
        grads=grads,
        lr_grads={},
        support_losses=result.losses,
        query_loss=query.item(),
    )


def meta_gradient(
    model: nn.Module,
    tasks: Sequence[Task],
    collate: Callable[[list[Any]], Any],
    cfg: InnerConfig,
    algorithm: Algorithm,
    *,
    lrs: Mapping[str, Tensor] | None = None,
    start_fn: StartFn | None = None,
    fixed: Mapping[str, Tensor] | None = None,
    query_identity: float = 0.0,
    query_frames: float = 0.0,
    query_verifier: float = 0.0,
    query_steps: Sequence[int] = (),
    query_support: float = 0.0,
) -> MetaGradient:
    """The mean of :func:`task_gradient` over a meta-batch of ``tasks``."""
    if not tasks:
        raise ValueError("the meta-batch holds no tasks")
    grads: dict[str, Tensor] = {}
    lr_grads: dict[str, Tensor] = {}
    support_losses, query_losses = [], []
    for task in tasks:  # one task's graph at a time
        t = task_gradient(model, task, collate, cfg, algorithm, lrs=lrs, start_fn=start_fn,
                          fixed=fixed, query_identity=query_identity, query_frames=query_frames,
                          query_verifier=query_verifier, query_steps=query_steps,
                          query_support=query_support)
        _accumulate(grads, t.grads, len(tasks))
        _accumulate(lr_grads, t.lr_grads, len(tasks))
        support_losses.append(t.support_losses)
        query_losses.append(t.query_loss)
    return MetaGradient(grads=grads, lr_grads=lr_grads, tasks=len(tasks),
                        support_losses=support_losses, query_losses=query_losses)


def _accumulate(total: dict[str, Tensor], grads: Mapping[str, Tensor], n: int) -> None:
    for name, g in grads.items():
        total[name] = total[name] + g / n if name in total else g / n


@torch.no_grad()
def write_grads(params: Mapping[str, Tensor], grads: Mapping[str, Tensor]) -> None:
    """Set ``params[name].grad`` to ``grads[name]`` for every named gradient, for ``optimizer.step()``.

    Parameters without a gradient in ``grads`` keep theirs (``optimizer.zero_grad()`` first).
    """
    unknown = [name for name in grads if name not in params]
    if unknown:
        raise ValueError(f"gradients for unknown parameters: {unknown}")
    for name, g in grads.items():
        params[name].grad = g.detach().to(params[name].dtype).clone()
