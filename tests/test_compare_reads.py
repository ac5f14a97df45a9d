"""benchmarks/compare_reads.py: judge-free reads pair clip by clip, by rate (inner_rate_voice.py)
or by key (frames_keys.py, the zero-shot voice)."""

import json

import pytest

from conftest import load_script

compare_reads = load_script("benchmarks/compare_reads.py")


def _clip(voice, text, value, **variant):
    return {"speaker": voice, "draw": 0, "text": text, "own": value, **variant}


def test_keys_of_one_frames_keys_read_pair_at_zero_steps(tmp_path):
    clips = [_clip(v, t, 0.5 + i * 0.1, key="hidden:4") for i, (v, t) in
             enumerate([("a", "one"), ("a", "two"), ("b", "one")])]
    clips += [dict(c, key="hidden:1", own=c["own"] + 0.02) for c in clips]
    read = tmp_path / "keys.json"
    read.write_text(json.dumps({"clips": clips}))
    table = compare_reads.compare(compare_reads.rows(read, "hidden:4"),
                                  compare_reads.rows(read, "hidden:1"))
    assert [(r["steps"], r["clips"]) for r in table] == [(0, 3)]
    assert table[0]["own"]["diff"] == pytest.approx(0.02)
    with pytest.raises(SystemExit, match="hidden:2"):
        compare_reads.rows(read, "hidden:2")


def test_rates_pair_by_step_count(tmp_path):
    clips = [dict(_clip("a", "one", 0.4 + n / 100, rate=r), steps=n)
             for r in ("0.0005", "0.001") for n in (0, 10)]
    clips[-1]["own"] += 0.1  # 0.001 at 10 steps
    read = tmp_path / "rates.json"
    read.write_text(json.dumps({"clips": clips}))
    table = compare_reads.compare(compare_reads.rows(read, "0.0005"),
                                  compare_reads.rows(read, "0.001"))
    assert [r["steps"] for r in table] == [0, 10]
    assert table[0]["own"]["diff"] == pytest.approx(0.0)
    assert table[1]["own"]["diff"] == pytest.approx(0.1)
