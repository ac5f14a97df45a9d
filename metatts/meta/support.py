"""The batches one inner step sees: all of the support set, one clip, or a mini-batch of clips."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch

Batching = Literal["full", "stochastic", "minibatch"]
BATCHINGS: tuple[str, ...] = ("full", "stochastic", "minibatch")


def support_batches(
    items: Sequence[Any],
    collate: Callable[[list[Any]], Any],
    batching: Batching,
    batch_size: int,
    generator: torch.Generator,
) -> Iterator[Any]:
    """An endless stream of batches drawn from the support ``items``.

    ``full`` yields ``collate(all items)`` every step (collated once); ``stochastic`` one item per
    step and ``minibatch`` ``batch_size`` items per step, going through a fresh ``generator``-seeded
    permutation of the items each epoch (the last batch of an epoch may be smaller). A batch size
    of at least ``len(items)`` is full-batch.
    """
    if len(items) == 0:
        raise ValueError("the support set is empty; give at least one clip to adapt on")
    if batching not in BATCHINGS:
        raise ValueError(f"unknown batching {batching!r}; choose one of {BATCHINGS}")
    size = {"full": len(items), "stochastic": 1, "minibatch": batch_size}[batching]
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if size >= len(items):
        batch = collate(list(items))
        while True:
            yield batch
    while True:
        order = torch.randperm(len(items), generator=generator).tolist()
        for start in range(0, len(order), size):
            yield collate([items[i] for i in order[start:start + size]])
