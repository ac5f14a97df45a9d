"""The benchmark's v2 tables: speaker groups never averaged together, the gap closed and the
steps-to-match arithmetic, Holm's correction, a second encoder's column, and resuming after a
kill with nothing judged twice."""

import json
import shutil

import numpy as np
import pytest
from conftest import SPEECH
from test_eval_harness import FakeScorer, checkpoints, fake_vocoder, options  # noqa: F401

from eval import benchmark, groups, readable, report, runner, stats

GROUP_OF = {"awb": "engine", "joe": "natural", "kokoro_jf_alpha": "natural", "slt": "real"}


@pytest.fixture
def grouped(tmp_path):
    """The speech fixtures as a manifest that declares each speaker's group."""
    data = tmp_path / "data"
    shutil.copytree(SPEECH, data)
    rows = [{"id": wav.stem, "speaker": wav.parent.name, "group": GROUP_OF[wav.parent.name],
             "audio": f"{wav.parent.name}/{wav.name}", "text": wav.with_suffix(".txt")
             .read_text().strip()} for wav in sorted(data.glob("*/*.wav"))]
    (data / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


@pytest.mark.parametrize("speaker, declared, group", [
    ("real_allison", None, "real"), ("kokoro_en_af_nicole", None, "natural"),
    ("kokoro_bm_fable", None, "natural"), ("kokoro_gongitsune_tebukuro", None, "engine"),
    ("kokoro_jf_alpha", None, "engine"), ("rab", None, "engine"), ("rab", "natural", "natural"),
])
def test_group_of_a_speaker(speaker, declared, group):
    assert groups.group_of(speaker, declared) == group


def test_manifest_groups_win_and_conflicts_are_refused(grouped, tmp_path):
    assert groups.speaker_groups(grouped, GROUP_OF) == GROUP_OF
    assert groups.speaker_groups(SPEECH, ["slt", "real_x"]) == {"slt": "engine",
                                                                 "real_x": "real"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"speaker": "a", "group": "real"}\n{"speaker": "a", "group": "engine"}\n')
    with pytest.raises(ValueError, match="one group"):
        groups.declared_groups(bad)
    with pytest.raises(ValueError, match="not one of"):
        groups.group_of("a", "robots")


def rec(group, speaker, method, secs, steps=5, seed=0, text="x", wer=0.0):
    return {"group": group, "speaker": speaker, "method": method, "shots": 1, "steps": steps,
            "seed": seed, "text": text, "wer": wer, "errors": 0, "words": 4, "secs": secs,
            "secs_ge2e": None, "mos": 3.0, "adapt_seconds": 1.0}


def test_groups_are_never_averaged_together():
    table = [rec("natural", "n1", "meta", 0.6), rec("natural", "n2", "meta", 0.4),
             rec("real", "r1", "meta", 0.1),
             rec("natural", "n1", "finetune-adam", 0.5), rec("natural", "n2", "finetune-adam", 0.3),
             rec("real", "r1", "finetune-adam", 0.2)]
    rows = {(r["group"], r["method"]): r for r in
            report.summary_rows(table, "finetune-adam", resamples=50)}
    assert set(rows) == {(g, m) for g in ("natural", "real") for m in ("meta", "finetune-adam")}
    assert rows["natural", "meta"]["secs"] == pytest.approx(0.5)  # not (0.6 + 0.4 + 0.1) / 3
    assert rows["real", "meta"]["secs"] == pytest.approx(0.1)
    assert (rows["natural", "meta"]["n"], rows["real", "meta"]["n"]) == (2, 1)
    assert rows["natural", "meta"]["p_vs_finetune"]["pairs"] == 2  # matched within its group
    assert rows["real", "meta"]["p_vs_finetune"]["pairs"] == 1
    assert [r["group"] for r in report.summary_rows(table, "finetune-adam", resamples=50)] == \
        ["natural"] * 2 + ["real"] * 2  # the report's group order


def test_gap_closed_matches_a_hand_computed_table():
    refs = [{"kind": "real", "speaker": "a", "secs": 0.6, "secs_floor": 0.1},
            {"kind": "real", "speaker": "a", "secs": 0.8, "secs_floor": 0.3},  # a: 0.2 .. 0.7
            {"kind": "real", "speaker": "b", "secs": 0.9, "secs_floor": 0.1},  # b: 0.1 .. 0.9
            {"kind": "vocoded", "speaker": "b", "secs": 0.0, "secs_floor": 0.0}]  # not a bound
    bounds = readable.speaker_bounds(refs)
    assert bounds["a"] == readable.Bounds(pytest.approx(0.2), pytest.approx(0.7))
    assert bounds["b"] == readable.Bounds(pytest.approx(0.1), pytest.approx(0.9))
    # a: clips 0.45 and 0.55 -> (0.5 - 0.2) / 0.5 = 0.6; b: one clip 0.1 -> 0; mean 0.3
    # (per speaker, then averaged: a's two clips do not count twice)
    clips = [rec("engine", "a", "m", 0.45), rec("engine", "a", "m", 0.55, text="y"),
             rec("engine", "b", "m", 0.1)]
    per = readable.gap_closed_by_speaker(clips, bounds)
    assert per == {"a": pytest.approx(0.6), "b": pytest.approx(0.0)}
    assert readable.gap_closed(clips, bounds) == pytest.approx(0.3)
    row = report.summary_rows(clips, "finetune-adam", bounds={"secs": bounds}, resamples=50)[0]
    assert row["gap_closed"] == pytest.approx(0.3) and row["gap_closed_ge2e"] is None
    assert readable.gap_closed(clips, {}) is None  # no bounds, no figure


@pytest.mark.parametrize("target, steps", [
    (0.2, 0.0),  # reached at the start
    (0.4, 7.5),  # between 5 (0.3) and 10 (0.5): 5 + 0.1 / 0.2 * 5
    (0.5, 10.0),
    (0.55, 15.0),  # between 10 (0.5) and 20 (0.6)
    (0.6, 20.0),
    (0.65, None),  # never on the grid: "> 20"
])
def test_steps_to_reach_interpolates_on_the_step_grid(target, steps):
    curve = {0: 0.2, 5: 0.3, 10: 0.5, 20: 0.6}
    got = readable.steps_to_reach(curve, target)
    assert got == (None if steps is None else pytest.approx(steps))


def test_steps_to_match_on_summary_rows():
    table = [rec("natural", "n", "meta", s, steps=n) for n, s in ((0, 0.2), (5, 0.4), (10, 0.5))]
    table += [rec("natural", "n", "finetune-adam", s, steps=n)
              for n, s in ((0, 0.2), (5, 0.3), (10, 0.45))]
    rows = report.summary_rows(table, "finetune-adam", resamples=50)
    entries = {e["at"]: e for e in report.steps_to_match(rows, "finetune-adam")
               if e["encoder"] == "ECAPA"}
    assert entries[5]["target"] == pytest.approx(0.4)
    assert entries[5]["steps"] == pytest.approx(5 + 0.1 / 0.15 * 5)  # 0.3 -> 0.45 over 5..10
    assert entries[10]["steps"] is None and entries[10]["max_steps"] == 10
    assert report._steps(None, 10) == "> 10"


def test_holm_matches_hand_computed_values():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> kept at 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == \
        [pytest.approx(0.03), pytest.approx(0.06), pytest.approx(0.06), pytest.approx(0.02)]
    assert stats.holm([None, 0.2, 0.5]) == [None, pytest.approx(0.4), pytest.approx(0.5)]
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1, never below an earlier one
    assert stats.holm([]) == [] and stats.holm([0.02]) == [0.02]


def test_summary_rows_adjust_p_values_across_cells():
    table = []
    for steps, lift in ((5, 0.1), (10, 0.2)):
        for i in range(6):
            table += [rec("natural", f"s{i}", "meta", 0.3 + lift + i / 100, steps, text="t"),
                      rec("natural", f"s{i}", "finetune-adam", 0.3, steps, text="t")]
    rows = [r for r in report.summary_rows(table, "finetune-adam", resamples=50)
            if r["method"] == "meta"]
    raw = [r["p_vs_finetune"]["secs"] for r in rows]
    assert raw == [pytest.approx(2 / 2 ** 6)] * 2  # all six differences positive
    assert [r["p_vs_finetune"]["holm"]["secs"] for r in rows] == \
        [pytest.approx(2 * 2 / 2 ** 6)] * 2  # two tests in the family


class CountingScorer(FakeScorer):
    """FakeScorer with a GE2E encoder, which can be told to die after some batches."""

    die_after: int | None = None

    def ge2e_missing(self):
        return ""

    def embed_ge2e(self, wavs, sample_rate):
        return np.stack([np.eye(3)[len(w) % 3] * 0.5 + 0.2 for w in wavs])

    def transcribe(self, wavs, sample_rate):
        if CountingScorer.die_after is not None and FakeScorer.calls >= CountingScorer.die_after:
            raise KeyboardInterrupt  # a kill in the middle of the run
        return super().transcribe(wavs, sample_rate)


def _clips(out):
    return {(r["method"], r["speaker"], r["seed"], r["steps"], r["text"]): r["secs"]
            for r in runner.read_results(out / runner.RESULTS)}


def test_groups_end_to_end_with_a_second_encoder(tmp_path, grouped, checkpoints):  # noqa: F811
    out = tmp_path / "out"
    summary = benchmark.run(options(out, checkpoints, grouped, methods=("finetune-adam",
                                                                          "finetune-sgd")),
                            CountingScorer(), fake_vocoder)
    assert {r["group"] for r in summary["rows"]} == {"natural", "real", "engine"}
    assert summary["speakers"] == {"natural": ["joe", "kokoro_jf_alpha"], "real": ["slt"],
                                   "engine": ["awb"]}
    natural = [r for r in summary["rows"] if r["group"] == "natural"]
    assert {r["n"] for r in natural} == {2 * 2 * 2}  # 2 speakers x 2 draws x 2 sentences
    assert all(r["secs_ge2e"] is not None for r in summary["rows"])
    assert set(summary["reference"]) == {"natural", "real", "engine"}
    assert summary["power"]["natural"] == {"min_pairs": 8, "max_pairs": 8, "cells": 2,
                                           "target": benchmark.POWER, "met": False}
    for r in runner.read_results(out / "references.jsonl"):
        assert r["group"] == GROUP_OF[r["speaker"]] and r["secs_ge2e_floor"] is not None
    text = (out / "report.md").read_text()
    for heading in ("## Group: natural", "## Group: real", "## Group: engine", "## Headline",
                    "gap closed GE2E", "non-intrusive"):
        assert heading in text
    assert "n/a" not in text.split("## Metric definitions")[0]

    missing = benchmark.run(options(tmp_path / "plain", checkpoints, grouped,
                                    methods=("finetune-adam",)), FakeScorer(), fake_vocoder)
    assert all(r["secs_ge2e"] is None for r in missing["rows"])
    assert "GE2E similarity: n/a (turned off)" in (tmp_path / "plain" / "report.md").read_text()


def test_a_killed_run_resumes_with_nothing_judged_twice(tmp_path, grouped,
                                                        checkpoints):  # noqa: F811
    settings = dict(methods=("finetune-adam",), steps=(0, 1, 2), tasks=2)
    whole = tmp_path / "whole"
    FakeScorer.calls = FakeScorer.clips_heard = 0
    CountingScorer.die_after = None
    benchmark.run(options(whole, checkpoints, grouped, **settings), CountingScorer(),
                  fake_vocoder)
    total = FakeScorer.clips_heard

    out = tmp_path / "out"
    FakeScorer.calls = FakeScorer.clips_heard = 0
    CountingScorer.die_after = 5  # references (2 batches), then 3 adaptations' batches
    with pytest.raises(KeyboardInterrupt):
        benchmark.run(options(out, checkpoints, grouped, **settings), CountingScorer(),
                      fake_vocoder)
    before = FakeScorer.clips_heard
    assert 0 < len(_clips(out)) < len(_clips(whole))
    CountingScorer.die_after = None
    benchmark.run(options(out, checkpoints, grouped, **settings), CountingScorer(), fake_vocoder)
    assert FakeScorer.clips_heard == total  # every clip (and reference) judged once in all
    assert before < total
    assert _clips(out) == _clips(whole)
    FakeScorer.calls = 0
    benchmark.run(options(out, checkpoints, grouped, **settings), CountingScorer(), fake_vocoder)
    assert FakeScorer.calls == 0


def test_the_plan_counts_what_a_run_judges(tmp_path, grouped, checkpoints):  # noqa: F811
    from eval import grid, plan

    opts = options(tmp_path / "out", checkpoints, grouped)
    tasks, _, _ = benchmark.read_tasks(opts)
    work = plan.count(grid.units(benchmark.grid_methods(opts), tasks, opts.steps))
    # 2 methods x 4 speakers x 2 draws, but each 3-clip speaker has one possible k = 1 draw;
    # clips: step 0 once per speaker (one checkpoint), step 1 once per method and speaker
    assert work.adaptations == {1: 2 * 4} and work.records == 2 * 4 * 2 * 2 * 2
    assert work.clips == 4 * 2 + 2 * 4 * 2
    assert work.per_cell[("natural", "finetune-adam", 1, 0)] == 2 * 2 * 2
    FakeScorer.clips_heard = 0
    benchmark.run(opts, FakeScorer(), fake_vocoder)
    assert FakeScorer.clips_heard == work.clips + 2 * 4 * 2  # + real and vocoded references
    costs = plan.measured_costs(runner.read_results(opts.out / runner.RESULTS))
    assert plan.wall_seconds(work, costs) == pytest.approx(
        8 * 1 * costs.adapt_per_step[1] + work.clips * (costs.synthesis + costs.scoring))


def test_the_plan_counts_a_start_from_the_clips_once_per_support_draw():
    from eval import grid, plan
    from metatts.data import read_dataset

    tasks, _ = grid.draw_tasks(read_dataset(SPEECH).utterances, (1,), 1, 2, 0)
    draws = len({(t.speaker, tuple(u.id for u in t.support)) for t in tasks})
    speakers = len({t.speaker for t in tasks})
    assert draws > speakers  # some speaker has two different draws

    def clips(*names):
        return plan.count(grid.units([grid.parse_method(n) for n in names], tasks, (0,))).clips

    # without frames: the mean start is one voice per speaker, the encoder's one per draw
    assert clips("finetune-adam:frames=0", "finetune-sgd:frames=0") == speakers
    assert clips("finetune-adam:frames=0", "finetune-encoder:frames=0") == speakers + draws
    # with frames every start speaks with its clips; two starts are two voices
    assert clips("finetune-adam", "finetune-sgd") == draws
    assert clips("finetune-adam", "finetune-encoder") == 2 * draws


def test_groups_keep_only_their_speakers(tmp_path, grouped, checkpoints):  # noqa: F811
    opts = options(tmp_path / "out", checkpoints, grouped, groups=("natural", "real"))
    tasks, _, _ = benchmark.read_tasks(opts)
    assert {t.speaker for t in tasks} == {"joe", "kokoro_jf_alpha", "slt"}
    summary = benchmark.run(opts, FakeScorer(), fake_vocoder)
    assert {r["group"] for r in summary["rows"]} == {"natural", "real"}
    assert tuple(summary["config"]["groups"]) == ("natural", "real")


def test_groups_are_checked(tmp_path, grouped, checkpoints, capsys):  # noqa: F811
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--groups", "natural,robots"])
    assert "expected groups from natural, real, engine" in capsys.readouterr().err
    assert benchmark.parse_args(["--groups", "real,natural,real"]).groups == ("real", "natural")
    only_engine = tmp_path / "engine"
    shutil.copytree(SPEECH / "awb", only_engine / "awb")
    with pytest.raises(benchmark.BenchmarkError, match="no speaker of group.s. real; its "
                       "speakers are in engine"):
        benchmark.read_tasks(options(tmp_path / "out", checkpoints, only_engine, groups=("real",)))
