import json
from pathlib import Path

import pytest

from eval import headline

ROOT = Path(__file__).resolve().parents[1]


def row(group, method, shots, steps, secs, gap, wer, mos):
    return {"group": group, "method": method, "shots": shots, "steps": steps, "secs": secs,
            "gap_closed": gap, "wer": wer, "mos": mos}


def test_rows_come_in_group_shot_method_order_with_every_step_count():
    summary = {"rows": [
        row("real", "meta", 5, 0, 0.25, 0.2, 0.0, 3.2),
        row("real", "meta", 5, 10, 0.5, 0.6, 0.01, 3.1),
        row("natural", "finetune-adam", 1, 0, 0.19, 0.13, 0.015, 3.3),
        row("natural", "meta", 1, 0, 0.28, 0.26, 0.018, 3.32),
        row("natural", "meta", 1, 10, 0.536, 0.63, 0.026, 3.14),
    ]}
    lines = headline.table(summary, ["meta", "finetune-encoder", "finetune-adam"])
    assert lines[0].startswith("| group, k | method | ECAPA after 0 / 10 steps |")
    assert lines[2:] == [
        "| natural, 1 | meta-learned start | 0.280 / 0.536 | 26 / 63 % | 1.8 / 2.6 | 3.32 / 3.14 |",
        "| natural, 1 | fine-tune from the mean | 0.190 / - | 13 / - % | 1.5 / - | 3.30 / - |",
        "| real, 5 | meta-learned start | 0.250 / 0.500 | 20 / 60 % | 0.0 / 1.0 | 3.20 / 3.10 |",
    ]


def test_the_table_reads_similarity_without_the_own_sentence_when_asked(tmp_path, capsys):
    rows = [dict(row("natural", "meta", 5, 10, 0.66, 0.8, 0.02, 3.1), secs_other=0.64,
                 gap_closed_other=0.75)]
    lines = headline.table({"rows": rows}, ["meta"], "secs_other")
    assert lines[0].startswith("| group, k | method | ECAPA, other sentences, after 10 steps "
                               "| gap closed (ECAPA, other sentences) |")
    assert lines[2] == "| natural, 5 | meta-learned start | 0.640 | 75 % | 2.0 | 3.10 |"
    (tmp_path / "summary.json").write_text(json.dumps({"rows": [row("natural", "meta", 5, 10,
                                                                    0.66, 0.8, 0.02, 3.1)]}))
    assert headline.main([str(tmp_path), "--without-own-sentence"]) == 1
    assert "has no similarity without the own sentence" in capsys.readouterr().err


def test_the_readme_table_is_the_full_runs_summary():
    # the README's headline rows are copied from results/eval_full by this command
    summary = json.loads((ROOT / "results/eval_full/summary.json").read_text())
    readme = (ROOT / "README.md").read_text().splitlines()
    rows = headline.table(summary, list(headline.NAMES))[2:]
    assert len(rows) == 18
    assert [r for r in rows if r not in readme] == []
    assert headline.references(summary)[0].startswith("natural: ceiling 0.798, floor 0.096;")


def test_a_folder_without_a_summary_is_named(tmp_path, capsys):
    assert headline.main([str(tmp_path)]) == 1
    assert "summary.json does not exist" in capsys.readouterr().err


def test_steps_to_match_puts_each_reports_baseline_in_a_column():
    def found(baseline, at, steps):
        return {"group": "natural", "shots": 5, "method": "meta", "at": at, "encoder": "ECAPA",
                "target": 0.5, "baseline": baseline, "steps": steps, "max_steps": 100}
    mean = {"steps_to_match": [found("finetune-adam", 10, None), found("finetune-adam", 5, 17.75)]}
    twin = {"steps_to_match": [found("finetune-encoder", 5, 5.02), found("finetune-encoder", 10, 10.2)]}
    assert headline.steps_to_match([mean, twin]) == [
        "| group | k | fine-tune from the mean | fine-tune from the encoder (twin) |",
        "|---|---|---|---|",
        "| natural | 5 | 17.8 / > 100 | 5.0 / 10.2 |",
    ]


def test_work_counts_each_adaptation_at_its_longest_and_each_clip_once():
    def rec(steps, text, voice, adapt, synth, score, task=0):
        return {"method": "meta", "speaker": "s", "shots": 5, "task": task, "support": ["a"],
                "steps": steps, "text": text, "voice": voice, "adapt_seconds": adapt,
                "synthesis_seconds": synth, "score_seconds": score}
    records = [rec(0, "x", "v0", 0.1, 1.0, 2.0), rec(0, "y", "v0", 0.1, 1.0, 2.0),
               rec(10, "x", "v10", 3.0, 1.5, 2.5), rec(10, "y", "v10", 3.0, 1.5, 2.5),
               # a second draw whose 0-step voice is the first's: its clips were reused
               rec(0, "x", "v0", 0.2, 1.0, 2.0, task=1)]
    w = headline.work(records)
    assert (w["records"], w["adaptations"], w["clips"]) == (5, 2, 4)
    assert w["adapt"] == 3.0 + 0.2 and w["synthesis"] == 5.0 and w["judges"] == 9.0
    assert headline.work_line(w).startswith("work: 0.0 h = adaptation 0 min (2 adaptations)")
    assert w["cpu"] is None and "CPU" not in headline.work_line(w)  # records before CPU times
    cpu = {"adapt_cpu_seconds": 4.0, "synthesis_cpu_seconds": 2.0, "score_cpu_seconds": 3.0}
    w = headline.work([{**r, **cpu} for r in records])
    assert w["cpu"] == 2 * 4.0 + 4 * (2.0 + 3.0)  # each adaptation once, each clip once
    assert "; CPU 0.0 core-hours; 5 records" in headline.work_line(w)


def test_the_readme_steps_to_match_table_is_the_full_runs():
    run = ROOT / "results/eval_full"
    summaries = [json.loads((run / "summary.json").read_text()),
                 json.loads((run / "vs_twin/summary.json").read_text())]
    rows = headline.steps_to_match(summaries)[2:]
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(rows) == 6 and [r for r in rows if r not in readme] == []


def test_voices_gives_each_voice_its_own_ceiling_and_share():
    def rec(speaker, group, steps, secs, method="meta", shots=5):
        return {"speaker": speaker, "group": group, "method": method, "shots": shots,
                "steps": steps, "secs": secs}
    records = [rec("a", "natural", 0, 0.4), rec("a", "natural", 0, 0.6), rec("a", "natural", 10, 0.8),
               rec("r", "real", 0, 0.3), rec("r", "real", 10, 0.6),
               rec("a", "natural", 10, 0.1, method="finetune-adam"), rec("a", "natural", 10, 0.1, shots=1),
               rec("e", "engine", 10, 0.9)]
    refs = [{"kind": "real", "speaker": "a", "secs": 0.7, "secs_floor": 0.1},
            {"kind": "real", "speaker": "a", "secs": 0.9, "secs_floor": 0.1},
            {"kind": "vocoded", "speaker": "a", "secs": 0.1},
            {"kind": "real", "speaker": "r", "secs": 0.6, "secs_floor": 0.1}]
    assert headline.voices(records, refs, "meta", 5)[2:] == [
        "| a | natural | 0.800 | 0.500 (62 %) / 0.800 (100 %) |",
        "| r | real | 0.600 | 0.300 (50 %) / 0.600 (100 %) |",
    ]


def test_voices_ends_a_group_with_its_means_and_reads_secs_other_when_asked():
    def rec(speaker, secs, other=None):
        return {"speaker": speaker, "group": "natural", "method": "meta", "shots": 5,
                "steps": 10, "secs": secs, "secs_other": other}
    records = [rec("a", 0.6, 0.5), rec("b", 0.4, 0.3), rec("b", 0.8)]  # b's second: no other
    refs = [{"kind": "real", "speaker": "a", "secs": 0.8, "secs_floor": 0.1},
            {"kind": "real", "speaker": "b", "secs": 0.5, "secs_floor": 0.1}]
    assert headline.voices(records, refs, "meta", 5)[-1] == \
        "| mean of 2 voices | natural | 0.650 | 0.600 (98 %) |"  # a 75 %, b 120 %
    assert headline.voices(records, refs, "meta", 5, field="secs_other")[2:] == [
        "| a | natural | 0.800 | 0.500 (62 %) |", "| b | natural | 0.500 | 0.300 (60 %) |",
        "| mean of 2 voices | natural | 0.650 | 0.400 (61 %) |"]


def test_voices_refuses_a_bad_method_spec(tmp_path, capsys):
    assert headline.main([str(tmp_path), "--voices", "meta"]) == 1
    assert "write METHOD:K" in capsys.readouterr().err


def test_the_readme_has_the_shipped_setups_full_run_too():
    # the shipped setup (frame matching on) has its own section, copied from its run
    run = ROOT / "results/eval_full_hidden"
    summary = json.loads((run / "summary.json").read_text())
    twin = json.loads((run / "vs_twin/summary.json").read_text())
    readme = (ROOT / "README.md").read_text().splitlines()
    rows = headline.table(summary, list(headline.NAMES))[2:] + headline.steps_to_match([summary, twin])[2:]
    assert len(rows) == 18 + 6
    assert [r for r in rows if r not in readme] == []


def test_a_damaged_run_folder_is_named_not_a_traceback(tmp_path, capsys):
    (tmp_path / "summary.json").write_text("{not json")
    assert headline.main([str(tmp_path)]) == 1
    assert "is not a complete python -m eval folder" in capsys.readouterr().err
    (tmp_path / "summary.json").write_text(json.dumps({"rows": [{"method": "meta"}]}))
    assert headline.main([str(tmp_path), "--methods", "bogus"]) == 1
    assert "no rows of bogus" in capsys.readouterr().err
    record = {"speaker": "a", "group": "natural", "method": "meta", "shots": 5, "seed": 0,
              "steps": 0, "text": "x", "secs": 0.5}
    (tmp_path / "results.jsonl").write_text(json.dumps(record) + "\n42\n")
    (tmp_path / "references.jsonl").write_text("")
    assert headline.main([str(tmp_path), "--voices", "meta:5"]) == 1
    assert "results.jsonl:2: not a record" in capsys.readouterr().err
    # a record without a field every reader keys on: named with its line, not a KeyError
    (tmp_path / "summary.json").write_text(json.dumps({"rows": []}))
    (tmp_path / "results.jsonl").write_text(
        json.dumps(record) + "\n" + json.dumps({k: v for k, v in record.items() if k != "method"})
        + "\n")
    for args in ([], ["--voices", "meta:5"]):
        assert headline.main([str(tmp_path), *args]) == 1
        err = capsys.readouterr().err
        assert "results.jsonl:2: a record without 'method'" in err and "KeyError" not in err


def test_results_files_skip_a_record_cut_off_and_refuse_other_lines(tmp_path):
    from eval import runner

    path = tmp_path / "results.jsonl"
    path.write_text('{"a": 1}\n{"cut off\n{"b": 2}\n')
    assert runner.read_results(path) == [{"a": 1}, {"b": 2}]
    path.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(runner.ResultsError, match="results.jsonl:2"):
        runner.read_results(path)
    record = {"method": "meta", "speaker": "a", "shots": 1, "seed": 0, "steps": 0, "text": "x"}
    for name in runner.RECORD_FIELDS:  # each field every reader keys a record on is required
        path.write_text(json.dumps(record) + "\n"
                        + json.dumps({k: v for k, v in record.items() if k != name}) + "\n")
        with pytest.raises(runner.ResultsError, match=f"results.jsonl:2: a record without "
                                                      f"'{name}'"):
            runner.read_results(path, runner.RECORD_FIELDS)
        assert len(runner.read_results(path)) == 2  # other files (references.jsonl) as before
