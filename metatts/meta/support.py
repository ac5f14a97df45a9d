"""The batches one inner step sees: all of the support set, one clip, or a mini-batch of clips."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import dataclasses

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


def fixed_alignment(model: torch.nn.Module, items: Sequence[Any], adapted: Sequence[str],
                    device: torch.device | str = "cpu") -> list[Any]:
    """The support items with their alignment attached (``durations``, from ``model.align`` on
    all of them at once, without gradient), when no adapted parameter can change it: the aligner
    reads only the token embedding and the mel. Every inner step then skips the aligner and its
    dynamic programs, with the same gradients. Returns ``items`` unchanged when ``adapted``
    names a parameter of the aligner or the token embedding, or the model has no ``align``."""
    if not hasattr(model, "align") or any(
            name.startswith(("aligner.", "token_embedding.")) for name in adapted):
        return list(items)
    from metatts.data.batch import collate

    training = model.training
    model.eval()
    try:
        durations = model.align(collate(list(items)).to(device)).cpu()
    finally:
        model.train(training)
    return [dataclasses.replace(x, durations=durations[i, : len(x.tokens)])
            for i, x in enumerate(items)]
