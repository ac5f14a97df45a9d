"""python -m eval.compare: two runs of one grid paired clip by clip."""

import json

import pytest

from eval.compare import compare, main


def _record(speaker, text, secs, support=("a", "b"), steps=0, group="natural"):
    return {"speaker": speaker, "group": group, "method": "finetune-encoder", "shots": 2,
            "task": 0, "seed": 0, "steps": steps, "text": text, "secs": secs,
            "secs_ge2e": secs + 0.3, "wer": 0.1, "mos": 3.0, "support": list(support)}


def _write(folder, records):
    folder.mkdir()
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_pairs_by_clip_and_drops_other_supports():
    a = [_record(s, t, 0.3) for s in ("v1", "v2") for t in ("one", "two", "three")]
    b = [_record(s, t, 0.4 if s == "v1" else 0.35) for s in ("v1", "v2")
         for t in ("one", "two", "three")]
    b[0]["support"] = ["c", "d"]  # adapted from other clips: not a pair
    b.append(_record("v3", "one", 0.9))  # not in A
    rows, mismatched = compare(a, b)
    assert mismatched == 1
    ecapa = next(r for r in rows if r["judge"] == "ECAPA")
    assert ecapa["clips"] == 5 and ecapa["a"] == pytest.approx(0.3)
    assert ecapa["b"] == pytest.approx((2 * 0.4 + 3 * 0.35) / 5)
    assert ecapa["difference"] == pytest.approx(0.07) and ecapa["b_higher"] == 1.0
    assert ecapa["low"] <= ecapa["difference"] <= ecapa["high"]
    wer = next(r for r in rows if r["judge"] == "WER %")
    assert wer["a"] == pytest.approx(10.0) and wer["p"] is None  # no difference: no test


def test_cli_prints_the_table_and_refuses_unmatched_runs(tmp_path, capsys):
    _write(tmp_path / "a", [_record("v1", "one", 0.3, steps=s) for s in (0, 20)])
    _write(tmp_path / "b", [_record("v1", "one", 0.5, steps=s) for s in (0, 20)])
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "| natural | finetune-encoder | 2 | 20 | ECAPA | 1 | 0.300 | 0.500 | +0.200" in out
    assert len(json.loads((tmp_path / "c.json").read_text())["rows"]) == 8
    # --out never replaces a run's own files, and another file only with --force
    results = tmp_path / "a" / "results.jsonl"
    before = results.read_text()
    for out, extra in ((results, ["--force"]), (tmp_path / "c.json", [])):
        with pytest.raises(SystemExit):
            main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert "one of this command's inputs" in err and "already exists" in err
    assert results.read_text() == before
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.json"),
                 "--force"]) == 0
    _write(tmp_path / "other", [_record("v9", "one", 0.5)])
    assert main([str(tmp_path / "a"), str(tmp_path / "other")]) == 2
    assert "no clip of" in capsys.readouterr().err
    assert main([str(tmp_path / "a"), str(tmp_path / "missing")]) == 2
    assert "has no results.jsonl" in capsys.readouterr().err


def test_two_cells_of_one_run_pair_their_clips(tmp_path, capsys):
    records = [dict(_record(s, t, 0.3 + 0.1 * (m == "meta"), steps=n), method=m)
               for s in ("v1", "v2") for t in ("one", "two")
               for m, n in (("meta", 10), ("finetune-adam", 100), ("meta", 100))]
    _write(tmp_path / "run", records)
    run = str(tmp_path / "run")
    assert main([run, run, "--cells", "finetune-adam:100", "meta:10",
                 "--out", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "| natural | finetune-adam:100 vs meta:10 | 2 | 0 | ECAPA | 4 | 0.300 | 0.400 |" in out
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["cells"] == [["finetune-adam:100", "meta:10"]]
    for bad in ("meta", "meta:ten", ":10"):
        with pytest.raises(SystemExit):
            main([run, run, "--cells", bad, "meta:10"])
        assert "give METHOD:STEPS" in capsys.readouterr().err


def test_cells_take_variant_names_and_name_what_a_run_holds(tmp_path, capsys):
    variant = "finetune-sgd:lr=0.1"
    records = [dict(_record("v1", t, secs, steps=n), method=m)
               for t in ("one", "two") for m, n, secs in ((variant, 20, 0.2), ("meta", 10, 0.5))]
    _write(tmp_path / "run", records)
    run = str(tmp_path / "run")
    assert main([run, run, "--cells", f"{variant}:20", "meta:10"]) == 0
    assert "| 2 | 0.200 | 0.500 | +0.300" in capsys.readouterr().out
    assert main([run, run, "--cells", "meta:100", "meta:10"]) == 2
    err = capsys.readouterr().err
    assert "no clip of the cell meta:100" in err and f"{variant}:20, meta:10" in err


def test_a_record_without_a_key_field_is_named_with_its_line(tmp_path, capsys):
    good = [_record("v1", "one", 0.3), _record("v1", "two", 0.3)]
    _write(tmp_path / "a", good)
    broken = [dict(r) for r in good]
    del broken[1]["method"]
    _write(tmp_path / "b", broken)
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 2  # was a KeyError traceback
    err = capsys.readouterr().err
    assert f"{tmp_path / 'b' / 'results.jsonl'}:2: a record without 'method'" in err


def test_the_paired_test_is_also_made_on_draw_and_voice_means():
    """Clips of one adaptation are not independent: besides the clips' p, compare tests the
    mean of each draw (speaker, task, seed) and of each voice, with their counts."""
    from scipy.stats import wilcoxon

    a, b = [], []
    gains = {("v1", 0): 0.05, ("v1", 1): 0.02, ("v2", 0): 0.04, ("v2", 1): -0.01,
             ("v3", 0): 0.03, ("v3", 1): 0.06}
    for (speaker, task), gain in gains.items():
        for n, text in enumerate(("one", "two", "three", "four")):
            x = 0.3 + 0.01 * n
            a.append({**_record(speaker, text, x), "task": task})
            b.append({**_record(speaker, text, x + gain + 0.001 * n), "task": task})
    ecapa = next(r for r in compare(a, b)[0] if r["judge"] == "ECAPA")
    assert ecapa["clips"] == 24 and ecapa["draws"] == 6 and ecapa["voices"] == 3
    per_draw = [gain + 0.0015 for gain in gains.values()]  # the mean of 0.001 * n over n < 4
    assert ecapa["p_draws"] == pytest.approx(wilcoxon(per_draw).pvalue)
    per_voice = [(gains[(v, 0)] + gains[(v, 1)]) / 2 + 0.0015 for v in ("v1", "v2", "v3")]
    assert ecapa["p_voices"] == pytest.approx(wilcoxon(per_voice).pvalue)
    assert ecapa["p"] < ecapa["p_draws"] < ecapa["p_voices"]  # fewer, truer units


def test_several_pairs_of_cells_from_joined_folders_are_one_holm_family(tmp_path, capsys):
    """#16's claims span cells run into different folders: each side may join folders with
    commas, --cells may be given again, and the Holm columns adjust over every pair printed."""
    from eval.stats import holm

    def records(method, steps, gain):
        return [dict(_record(s, t, 0.3 + gain + 0.01 * n + 0.002 * i, steps=steps),
                     method=method, task=task, secs_other=0.25 + gain + 0.01 * n)
                for i, s in enumerate(("v1", "v2", "v3")) for task in (0, 1)
                for n, t in enumerate(("one", "two", "three"))]

    _write(tmp_path / "meta", records("meta", 10, 0.1) + records("meta", 0, 0.0))
    _write(tmp_path / "mean", records("finetune-adam", 100, 0.05))
    _write(tmp_path / "twin", records("finetune-encoder", 0, 0.0))
    side_b = f"{tmp_path / 'mean'},{tmp_path / 'twin'}"
    assert main([str(tmp_path / "meta"), side_b, "--cells", "meta:10", "finetune-adam:100",
                 "--cells", "meta:0", "finetune-encoder:0", "--out", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "| natural | meta:10 vs finetune-adam:100 | 2 | 0 | ECAPA | 18 | 0.412 | 0.362 |" in out
    assert "| ECAPA other | 18 | 0.360 | 0.310 |" in out  # the records' secs_other
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    ecapa = [r for r in rows if r["judge"] == "ECAPA"]
    assert [r["method"] for r in ecapa] == ["meta:0 vs finetune-encoder:0",
                                            "meta:10 vs finetune-adam:100"]
    assert ecapa[0]["p"] is None and ecapa[1]["p"] < 0.05  # the same clips: no difference
    for level, adjusted in (("p", "holm"), ("p_draws", "holm_draws"), ("p_voices", "holm_voices")):
        assert [r[adjusted] for r in ecapa] == holm([r[level] for r in ecapa])
    assert main([str(tmp_path / "meta"), side_b, "--cells", "meta:20", "finetune-adam:100"]) == 2
    assert "has no clip of the cell meta:20; it has meta:0, meta:10." in capsys.readouterr().err
    # a clip in two joined folders, or a pair given twice, would count its clips twice
    _write(tmp_path / "again", records("finetune-adam", 100, 0.05))
    assert main([str(tmp_path / "meta"), f"{side_b},{tmp_path / 'again'}",
                 "--cells", "meta:10", "finetune-adam:100"]) == 2
    assert f"is in {tmp_path / 'mean'} and again in {tmp_path / 'again'}" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "meta"), side_b, "--cells", "meta:10", "finetune-adam:100",
              "--cells", "meta:10", "finetune-adam:100"])
    assert "given twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([",", side_b])
    assert "names no folder" in capsys.readouterr().err
    # a pair whose cells exist but share no clip is named, not dropped from the family
    _write(tmp_path / "other_k", [dict(r, shots=3) for r in records("finetune-adam", 50, 0.0)])
    assert main([str(tmp_path / "meta"), f"{side_b},{tmp_path / 'other_k'}",
                 "--cells", "meta:10", "finetune-adam:100",
                 "--cells", "meta:10", "finetune-adam:50"]) == 2
    assert "no clip of the pair meta:10 vs finetune-adam:50 matches" in capsys.readouterr().err


def test_the_difference_interval_resamples_voices():
    """One voice gains 0.1 on every clip, the other nothing: resampled by voice, the interval
    reaches from 0 to 0.1 (by draw it would be narrower)."""
    a, b = [], []
    for speaker, gains in (("v1", (0.1, 0.1)), ("v2", (0.0, 0.0))):
        for task, gain in enumerate(gains):
            for text in ("one", "two"):
                a.append({**_record(speaker, text, 0.3), "task": task})
                b.append({**_record(speaker, text, 0.3 + gain), "task": task})
    ecapa = next(r for r in compare(a, b)[0] if r["judge"] == "ECAPA")
    assert (ecapa["low"], ecapa["high"]) == (pytest.approx(0.0), pytest.approx(0.1))
