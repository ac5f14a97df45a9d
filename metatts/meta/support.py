"""The batches one inner step sees: all of the support set, one clip, or a mini-batch of clips."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import contextlib
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
    reads only the token embedding (or its own) and the mel. Every inner step then skips the
    aligner and its dynamic programs, with the same gradients. Returns ``items`` unchanged when
    ``adapted`` names a parameter of the aligner or the token embeddings, or the model has no
    ``align``."""
    if not hasattr(model, "align") or any(
            name.startswith(("aligner.", "aligner_embedding.", "token_embedding."))
            for name in adapted):
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


def text_encoder_names(model: torch.nn.Module) -> set[str]:
    """Names of the parameters the text encoder's output depends on (token embedding, encoder)."""
    return {f"{module}.{name}" for module in ("token_embedding", "encoder")
            for name, _ in getattr(model, module).named_parameters()}


def fixed_text_states(model: torch.nn.Module, items: Sequence[Any], adapted: Sequence[str],
                      device: torch.device | str = "cpu",
                      arithmetic: contextlib.AbstractContextManager | None = None) -> list[Any]:
    """The items with the text encoder's output attached (``text_states``, from
    ``model.text_states`` per item, without gradient), when no adapted parameter can change it:
    it reads only the token embedding and the text encoder. Every inner step then skips the text
    encoder (about 6 % of a step of the v2 model's decoder adaptation), with the same loss and
    gradients. Run it on the items as the steps will see them (after :func:`split_long`: a piece's
    tokens are encoded without the rest of its clip) and in the steps' ``arithmetic`` (e.g.
    ``metatts.meta.inner_loop.arithmetic``). Returns ``items`` unchanged when ``adapted`` names a
    parameter of the token embedding or the text encoder, or the model has no ``text_states``."""
    if not hasattr(model, "text_states") or set(adapted) & text_encoder_names(model):
        return list(items)
    from metatts.data.batch import collate

    training = model.training
    model.eval()
    out = []
    try:
        with arithmetic or contextlib.nullcontext():
            for x in items:  # one at a time: no padding reaches a piece's attention
                states = model.text_states(collate([x]).to(device))[0].cpu()
                out.append(dataclasses.replace(x, text_states=states))
    finally:
        model.train(training)
    return out


def split_long(items: Sequence[Any], max_frames: int, boundaries: Sequence[int] = ()
               ) -> list[Any]:
    """Aligned items (with ``durations``) longer than ``max_frames`` mel frames, cut into
    pieces of whole tokens, as even in length as the token boundaries allow, preferring to cut
    after a token id in ``boundaries`` (spaces, punctuation) near each even cut. Every frame,
    token and F0 value stays in exactly one piece, so a loss pooled over frames and tokens covers
    the same targets; what changes is the context (attention sees a piece, not the whole clip),
    and attention's cost, quadratic in length, falls. Items without durations, or not longer,
    are kept whole. ``max_frames`` 0 keeps every item whole."""
    if max_frames <= 0:
        return list(items)
    preferred = set(int(b) for b in boundaries)
    out = []
    for x in items:
        frames = x.mel.shape[-1]
        if x.durations is None or frames <= max_frames or len(x.tokens) < 2:
            out.append(x)
            continue
        ends = torch.cumsum(x.durations, 0).tolist()  # frame after each token
        pieces = -(-frames // max_frames)
        cuts = []  # token counts: piece i covers tokens cuts[i-1]:cuts[i]
        for p in range(1, pieces):
            target = frames * p / pieces
            low = cuts[-1] + 1 if cuts else 1
            options = range(low, len(x.tokens))  # cut after token j-1: tokens [.., j)
            if not options:
                break

            def cost(j: int) -> float:
                # distance to the even cut, in frames; a boundary token counts as 40 frames nearer
                return abs(ends[j - 1] - target) - (40 if int(x.tokens[j - 1]) in preferred else 0)

            cuts.append(min(options, key=cost))
        cuts.append(len(x.tokens))
        start_token, start_frame = 0, 0
        for n, cut in enumerate(cuts):
            end_frame = int(ends[cut - 1]) if cut < len(x.tokens) else frames
            out.append(dataclasses.replace(
                x, id=f"{x.id}#{n}", tokens=x.tokens[start_token:cut],
                mel=x.mel[:, start_frame:end_frame],
                durations=x.durations[start_token:cut],
                f0=None if x.f0 is None else x.f0[start_frame:end_frame],
                # a piece's text is encoded without the rest of its clip: any states of the
                # whole clip do not hold for it (fixed_text_states runs after split_long)
                text_states=None))
            start_token, start_frame = cut, end_frame
    return out
