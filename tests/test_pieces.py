"""Long support clips step as pieces of whole tokens (AdaptSettings.piece_frames): the same frames,
tokens and F0, cut near even lengths, preferably after a space or punctuation."""

import dataclasses

import pytest
import torch

from metatts.adapt import AdaptSettings, adapt, default_settings, word_boundaries
from metatts.data.batch import Example
from metatts.meta.support import split_long
from metatts.text import SYMBOLS

from test_adapt import base, clips  # noqa: F401 - the tiny model and the slt clips



def aligned(durations, tokens=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    durations = torch.as_tensor(durations)
    frames = int(durations.sum())
    tokens = torch.randint(5, 60, (len(durations),), generator=g) if tokens is None else tokens
    return Example("clip", -1, tokens, torch.randn(80, frames, generator=g), durations,
                   torch.rand(frames, generator=g))


def test_pieces_hold_every_frame_token_and_f0_once():
    x = aligned(torch.randint(1, 12, (120,), generator=torch.Generator().manual_seed(1)))
    frames = x.mel.shape[-1]
    pieces = split_long([x], 250)
    assert len(pieces) == -(-frames // 250)
    assert torch.equal(torch.cat([p.mel for p in pieces], 1), x.mel)
    assert torch.equal(torch.cat([p.tokens for p in pieces]), x.tokens)
    assert torch.equal(torch.cat([p.durations for p in pieces]), x.durations)
    assert torch.equal(torch.cat([p.f0 for p in pieces]), x.f0)
    for p in pieces:  # each piece is its own aligned clip
        assert int(p.durations.sum()) == p.mel.shape[-1] == len(p.f0)
        assert abs(p.mel.shape[-1] - frames / len(pieces)) < 12  # even, to within a token
    assert len({p.id for p in pieces}) == len(pieces)


def test_cuts_prefer_a_word_boundary_nearby():
    durations = torch.full((40,), 10)  # 400 frames; an even cut falls after token 20
    tokens = torch.full((40,), 30)
    tokens[22] = 7  # a space 2 tokens (20 frames) past the even cut
    pieces = split_long([aligned(durations, tokens)], 200, boundaries=[7])
    assert [len(p.tokens) for p in pieces] == [23, 17]  # cut after the space
    tokens[30] = 7  # 100 frames away: too far, the even cut wins
    tokens[22] = 30
    assert [len(p.tokens) for p in split_long([aligned(durations, tokens)], 200, [7])] == [20, 20]


def test_short_unaligned_or_off_stay_whole():
    short = aligned(torch.full((10,), 5))
    unaligned = dataclasses.replace(aligned(torch.full((100,), 5)), durations=None)
    long = aligned(torch.full((100,), 5))
    assert split_long([short, unaligned], 100) == [short, unaligned]
    assert split_long([long], 0) == [long]


def test_setting_is_checked_and_on_by_default(base):  # noqa: F811
    with pytest.raises(ValueError, match="piece_frames"):
        AdaptSettings(piece_frames=10)
    assert default_settings("pretrained", base).piece_frames == 400
    assert default_settings("pretrained", base, "encoder").piece_frames == 400
    assert " " in [SYMBOLS.symbols[i] for i in word_boundaries(SYMBOLS)]


def test_adapting_on_pieces_follows_nearly_the_same_loss(base, clips):  # noqa: F811
    whole = AdaptSettings(steps=3, lr=0.01)
    pieces = dataclasses.replace(whole, piece_frames=60)
    a, b = adapt(clips, base, whole), adapt(clips, base, pieces)
    assert max(c.seconds for c in clips) * 86 > 60  # some clip is cut
    assert b.voice.settings["piece_frames"] == 60
    # the same targets with shorter context: the loss before any step moves only a little
    assert a.losses[0] != b.losses[0]
    assert abs(a.losses[0] - b.losses[0]) < 0.1 * a.losses[0]
    assert b.losses[-1] < b.losses[0]


def test_pieces_drop_text_states_of_the_whole_clip():
    x = aligned(torch.full((40,), 10))
    x = dataclasses.replace(x, text_states=torch.randn(40, 8))
    pieces = split_long([x], 200)
    assert len(pieces) == 2 and all(p.text_states is None for p in pieces)
