"""Which parameters adapt: named groups of a model's parameters, picked out as a dict.

A model that meta-learns exposes ``parameter_groups() -> dict[str, list[str]]`` mapping a group
name ("embedding", "conditional_norms", "decoder", "all", ...) to parameter names. The inner loop
works on a plain ``dict[str, Tensor]`` of the chosen parameters; everything else stays the model's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn


def adapted_names(model: nn.Module, groups: Iterable[str]) -> list[str]:
    """Parameter names in the union of ``groups``, in the model's parameter order."""
    if isinstance(groups, str):
        raise TypeError(f"groups must be a sequence of group names, got the string {groups!r}; "
                        f"write ({groups!r},)")
    known = model.parameter_groups()
    chosen: set[str] = set()
    for group in groups:
        if group not in known:
            raise ValueError(f"unknown parameter group {group!r}; this model has {sorted(known)}")
        chosen.update(known[group])
    if not chosen:
        raise ValueError(f"parameter groups {tuple(groups)} select no parameters")
    names = [name for name, _ in model.named_parameters() if name in chosen]
    missing = chosen - set(names)
    if missing:
        raise ValueError(f"parameter_groups() names parameters the model lacks: {sorted(missing)}")
    return names


def initial_params(model: nn.Module, groups: Iterable[str], *, detach: bool) -> dict[str, Tensor]:
    """The model's current values of the parameters in ``groups``.

    ``detach=False`` returns the parameters themselves, so that what the inner loop computes from
    them stays differentiable with respect to the model (meta-training); ``detach=True`` returns
    copies that share no graph and no storage with the model (adaptation, fine-tuning).
    """
    named = dict(model.named_parameters())
    return {name: named[name].detach().clone() if detach else named[name]
            for name in adapted_names(model, groups)}


def check_names(model: nn.Module, params: Mapping[str, Tensor]) -> None:
    """Raise if ``params`` holds a name that is not one of the model's parameters."""
    named = dict(model.named_parameters())
    unknown = [name for name in params if name not in named]
    if unknown:
        raise ValueError(f"not parameters of {type(model).__name__}: {unknown}; "
                         f"pick names with metatts.meta.adapted_names(model, groups)")
    for name, value in params.items():
        if value.shape != named[name].shape:
            raise ValueError(f"parameter {name!r} has shape {tuple(value.shape)}, "
                             f"the model's has {tuple(named[name].shape)}")


@torch.no_grad()
def load_params(model: nn.Module, params: Mapping[str, Tensor]) -> None:
    """Copy ``params`` into the model's parameters of the same names, in place."""
    check_names(model, params)
    named = dict(model.named_parameters())
    for name, value in params.items():
        named[name].copy_(value)
