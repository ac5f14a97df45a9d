"""Inner-loop update rules as pure functions: gradients (and a state) in, steps (and a state) out.

The parameters move by ``params[k] - step[k]``. SGD is a differentiable expression of its inputs
(second-order MAML differentiates through it; Meta-SGD learns its ``lrs``); Adam is for the
fine-tuning baseline and first-order methods and is not meant to be differentiated through; its
learned rates (``lrs``, one per tensor or per element) scale the step, so a first-order method can
learn them (the gradient of the query loss through the update sums).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor


def sgd_step(
    grads: Mapping[str, Tensor], lr: float, lrs: Mapping[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """``lr * grad`` per parameter, or ``lrs[name] * grad`` (elementwise, Meta-SGD) when given."""
    if lrs is None:
        return {name: lr * g for name, g in grads.items()}
    return {name: lrs[name] * g for name, g in grads.items()}


@dataclass(frozen=True)
class AdamState:
    step: int  # updates taken so far
    m: dict[str, Tensor]  # first-moment estimates, same shapes as the parameters
    v: dict[str, Tensor]  # second-moment estimates


def adam_init(params: Mapping[str, Tensor]) -> AdamState:
    zeros = {name: torch.zeros_like(p, memory_format=torch.preserve_format).detach()
             for name, p in params.items()}
    return AdamState(step=0, m=zeros, v={name: z.clone() for name, z in zeros.items()})


def adam_step(
    grads: Mapping[str, Tensor],
    state: AdamState,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    lrs: Mapping[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], AdamState]:
    """One Adam update (Kingma & Ba, bias-corrected; the same arithmetic as ``torch.optim.Adam``).
    ``lrs[name]`` (broadcastable to the parameter: one rate per tensor or per element) replaces
    ``lr`` when given."""
    b1, b2 = betas
    t = state.step + 1
    m = {name: b1 * state.m[name] + (1 - b1) * g for name, g in grads.items()}
    v = {name: b2 * state.v[name] + (1 - b2) * g * g for name, g in grads.items()}
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    rate = {name: lr if lrs is None else lrs[name] for name in grads}
    steps = {name: (rate[name] / c1) * m[name] / ((v[name] / c2).sqrt() + eps) for name in grads}
    return steps, AdamState(step=t, m=m, v=v)
