"""benchmarks/frames_keys.py: its log-mel key is the library's frame matching, exactly."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import frames_keys  # noqa: E402

from metatts.frames import FrameBank  # noqa: E402


def bank_and_states(frames=30, n_mels=80, hidden=16):
    g = torch.Generator().manual_seed(0)
    bank = FrameBank(torch.randn(frames, n_mels, generator=g),
                     torch.randn(frames, n_mels, generator=g))
    twin = {"hidden": torch.randn(frames, hidden, generator=g),
            "input": torch.randn(frames, hidden, generator=g)}
    return bank, twin


@pytest.mark.parametrize("k,width", [(1, 1), (4, 3), (8, 5)])
def test_the_mel_key_is_frame_bank_apply(k, width):
    bank, twin = bank_and_states()
    mel = torch.randn(80, 12, generator=torch.Generator().manual_seed(1))
    said = {"hidden": torch.randn(12, 16), "input": torch.randn(12, 16)}
    out = frames_keys.corrected(mel, f"mel:{k}:{width}", bank, twin, said)
    expected = FrameBank(bank.twin, bank.real, k, width).apply(mel)
    torch.testing.assert_close(out, expected)


def test_a_state_key_matches_by_the_states_and_select_copies_real_frames():
    bank, twin = bank_and_states()
    # spoken frames whose hidden states are exactly twin frames 3 and 7
    said = {"hidden": twin["hidden"][[3, 7]], "input": twin["input"][[3, 7]]}
    mel = torch.zeros(80, 2)
    out = frames_keys.corrected(mel, "hidden:1:1", bank, twin, said)
    torch.testing.assert_close(out, (bank.real[[3, 7]] - bank.twin[[3, 7]]).T)
    out = frames_keys.corrected(mel, "select/hidden:1:1", bank, twin, said)
    torch.testing.assert_close(out, bank.real[[3, 7]].T)


def test_bad_keys_are_refused():
    for key in ("pitch:4", "mel:4:2"):
        with pytest.raises(SystemExit):
            frames_keys.parse_key(key)


def test_frame_symbols_follow_the_durations():
    tokens = torch.tensor([5, 9, 2])
    assert frames_keys.frame_symbols(tokens, torch.tensor([2, 0, 3]), 5).tolist() == [5, 5, 2, 2, 2]
    # durations short of the mel: the last symbol holds
    assert frames_keys.frame_symbols(tokens, torch.tensor([1, 1, 1]), 5).tolist() == [5, 9, 2, 2, 2]


def test_the_phone_key_matches_only_frames_of_the_same_symbol():
    bank, twin = bank_and_states(frames=6)
    twin["symbols"] = torch.tensor([1, 1, 2, 2, 2, 3])
    mel = bank.twin[[0]].T.clone()  # spoken frame 0 is twin frame 0, but said as symbol 2
    said = {"hidden": twin["hidden"][[0]], "symbols": torch.tensor([2])}
    out = frames_keys.corrected(mel, "phone/mel:2:1", bank, twin, said)
    dist = torch.cdist(mel.T, bank.twin[2:5])[0]
    near = 2 + dist.topk(2, largest=False).indices
    torch.testing.assert_close(out, mel + (bank.real[near] - bank.twin[near]).mean(0)[:, None])
    # more neighbours asked than the symbol has: only its own frames, each counted once
    out = frames_keys.corrected(mel, "phone/mel:4:1", bank, twin, said)
    torch.testing.assert_close(out, mel + (bank.real[2:5] - bank.twin[2:5]).mean(0)[:, None])
    # a symbol the bank lacks matches among all frames, as without the prefix
    said["symbols"] = torch.tensor([7])
    torch.testing.assert_close(frames_keys.corrected(mel, "phone/mel:2:1", bank, twin, said),
                               frames_keys.corrected(mel, "mel:2:1", bank, twin, said))


def test_none_leaves_the_frames_as_the_model_made_them():
    bank, twin = bank_and_states()
    mel = torch.randn(80, 5)
    assert frames_keys.parse_key("none") == ("none", 0, 1)
    assert frames_keys.corrected(mel, "none", bank, twin, {}) is mel


def rows_of(voice, ver, others=None, nat=None, n=2):
    out = []
    for i in range(n):
        r = {"speaker": voice, "ver": ver + 0.01 * i}
        if others is not None:
            r["ver_others"] = others
        if nat is not None:
            r["nat"] = nat
        out.append(r)
    return out


def test_instrument_cells_average_per_voice_then_over_voices_and_margin_is_ver_less_others():
    # voice a has 2 clips, voice b 4: a plain mean over clips would weigh b twice
    chosen = (rows_of("a", 0.8, others=0.1, nat=4.0)
              + rows_of("b", 0.4, others=-0.1, nat=float("nan"), n=1)
              + rows_of("b", 0.4, others=-0.1, nat=3.0, n=3))
    cell = frames_keys.instrument_cells(chosen)
    ver_b = (0.4 + 0.4 + 0.41 + 0.42) / 4
    assert cell["ver"] == pytest.approx((0.805 + ver_b) / 2)
    assert cell["ver_others"] == pytest.approx(0.0)
    assert cell["ver_margin"] == pytest.approx(cell["ver"] - cell["ver_others"])
    assert cell["nat"] == pytest.approx((4.0 + 3.0) / 2)  # the silent clip left out


def test_no_margin_without_other_voices_and_no_cells_without_readings():
    cell = frames_keys.instrument_cells(rows_of("a", 0.7))  # one voice: no "others" in the rows
    assert cell == {"ver": pytest.approx(0.705)}
    assert frames_keys.instrument_cells([{"speaker": "a", "own": 0.9}]) == {}
    assert frames_keys.number(None) == "-" and frames_keys.number(float("nan")) == "-"
    assert frames_keys.number(0.12345) == "0.123"


def test_instruments_without_a_verifier_or_naturalness_add_nothing():
    from frames_grid import Instruments

    none = Instruments(None, False, {"a": []})
    row = {"speaker": "a"}
    none.read(row, np.zeros(10, dtype=np.float32))
    none.finish([row])
    assert row == {"speaker": "a"} and none.header() == ("", "") and none.row({}) == ""
    assert none.extra == {}
