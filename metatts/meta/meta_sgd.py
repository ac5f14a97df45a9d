"""Meta-SGD (Li et al., 2017): a learned inner learning rate for every adapted parameter element,
or one per adapted tensor (per layer, as MAML++'s learned per-layer rates; with an Adam inner loop
the rate scales Adam's step).

The rates live in a module of their own so that an outer optimizer can train them beside the
model and a checkpoint can save them (``state_dict`` keys are the parameter names with "." written
as "__"). Pass ``rates.as_dict()`` as ``lrs`` to :func:`metatts.meta.inner_loop`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn


class InnerLearningRates(nn.Module):
    def __init__(self, params: Mapping[str, Tensor], lr: float, per_tensor: bool = False) -> None:
        """One rate per element of each of ``params`` (name -> tensor), all starting at ``lr``;
        ``per_tensor``: one per tensor instead (shape (1, ..., 1), broadcast over it)."""
        super().__init__()
        if not params:
            raise ValueError("InnerLearningRates needs at least one parameter")
        keys = {name: name.replace(".", "__") for name in params}
        if len(set(keys.values())) != len(keys):
            raise ValueError(f"parameter names collide once '.' is written '__': {sorted(params)}")
        self.names = tuple(params)
        self.rates = nn.ParameterDict({
            keys[name]: nn.Parameter(torch.full((1,) * p.ndim, lr, dtype=p.dtype, device=p.device)
                                     if per_tensor else torch.full_like(p.detach(), lr))
            for name, p in params.items()
        })

    def as_dict(self) -> dict[str, Tensor]:
        """Parameter name -> its rates (same shape as the parameter), attached to this module."""
        return {name: self.rates[name.replace(".", "__")] for name in self.names}
