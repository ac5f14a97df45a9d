"""benchmarks/zero_shot_pairs.py: two zero-shot reads paired clip by clip, per voice group."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import zero_shot_pairs  # noqa: E402


def read(path, kind, values, group="natural"):
    clips = [{"speaker": f"s{i % 2}", "group": group, "kind": kind, "text": f"t{i}",
              "secs": v, "transcript": "", "dnsmos": 3.0} for i, v in enumerate(values)]
    path.write_text(json.dumps({"zero_shot": {"clips": clips}}))
    return f"{path}:{kind}"


def test_pairs_by_clip_and_reports_the_difference(tmp_path):
    a = read(tmp_path / "a.json", "encoder", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    b = read(tmp_path / "b.json", "encoder_references", [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75])
    out = tmp_path / "c.json"
    assert zero_shot_pairs.main([a, b, "--out", str(out)]) == 0
    row = json.loads(out.read_text())["a:encoder -> b:encoder_references"]["natural"]
    assert row["clips"] == 7 and row["diff"] == pytest.approx(0.0929, abs=1e-4)
    assert row["b_higher_share"] == 1.0 and row["p"] < 0.05
    assert "real" not in json.loads(out.read_text())["a:encoder -> b:encoder_references"]


def test_bad_reads_say_what_to_give(tmp_path):
    a = read(tmp_path / "a.json", "encoder", [0.1])
    with pytest.raises(SystemExit, match="no 'mean' clips; it has \\['encoder'\\]"):
        zero_shot_pairs.main([a, str(tmp_path / "a.json") + ":mean"])
    (tmp_path / "old.json").write_text(json.dumps({"zero_shot": {"rows": []}}))
    with pytest.raises(SystemExit, match="no per-clip figures"):
        zero_shot_pairs.main([a, str(tmp_path / "old.json") + ":encoder"])
    with pytest.raises(SystemExit):
        zero_shot_pairs.main([a])  # not a pair
