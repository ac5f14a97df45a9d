"""The benchmark harness: a complete grid, disjoint support/test texts, references that are never
support clips, resuming, bad data skipped, and statistics checked by hand."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SPEECH

from eval import benchmark, grid, report, stats
from eval.scorer import Scorer
from metatts.data import read_dataset
from metatts.data.episodes import text_key
from metatts.model.checkpoint import save_checkpoint
from metatts.model.config import load_config
from metatts.model.fastspeech2 import FastSpeech2
from metatts.text import SYMBOLS

TINY = Path(__file__).parent.parent / "configs" / "tiny.json"


class FakeScorer(Scorer):
    """Cheap and deterministic: a fixed transcript, embeddings from the clip length; counts the
    clips it transcribes (every clip judged passes through transcribe once)."""

    calls = 0  # batches transcribed
    clips_heard = 0

    def __init__(self):
        super().__init__(ge2e=False)

    def transcribe(self, wavs, sample_rate):
        FakeScorer.calls += 1
        FakeScorer.clips_heard += len(wavs)
        return ["the words"] * len(wavs)

    def embed(self, wavs, sample_rate):
        return np.stack([np.eye(4)[len(w) % 4] * 0.8 + 0.1 for w in wavs])

    def mos(self, wavs, sample_rate):
        return [3.0] * len(wavs)


def fake_vocoder(mel):
    return torch.full((mel.shape[-1] * 256,), 0.01)


fake_vocoder.mode = "test"  # as a metatts.vocoder.Vocoder says which path it runs


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    config = load_config(TINY, {"model": {"n_symbols": len(SYMBOLS), "n_speakers": 2},
                                "data": {"tokens": "phonemes"}})
    save_checkpoint(root / "pretrained", FastSpeech2(config.model, config.loss), config,
                    SYMBOLS, ("a", "b"))
    return root


def options(out, checkpoints, data=SPEECH, **changes):
    values = {"data": str(data), "out": out, "checkpoint_dir": checkpoints, "methods": (),
              "shots": (1,), "steps": (0, 1), "tasks": 2, "test_sentences": 2, "speakers": 0,
              "seed": 0, "asr": "tiny.en", "bootstrap": 200, "optimizer_study": False,
              "progress": False}
    return benchmark.Options(**{**values, **changes})


def test_the_grid_is_complete():
    utts = read_dataset(SPEECH).utterances
    tasks, skipped = grid.draw_tasks(utts, (1, 2), n_test=1, tasks=3, seed=0)
    methods = [grid.parse_method(m) for m in ("finetune-adam", "finetune-sgd:lr=0.1")]
    units = grid.units(methods, tasks, (0, 5, 10))
    assert not skipped and len(tasks) == 4 * 2 * 3 and len(units) == 2 * 24 * 3
    keys = {(u.method.name, u.task.speaker, u.shots, u.task.index, u.steps) for u in units}
    assert len(keys) == len(units)


@pytest.mark.parametrize("seed", range(5))
def test_support_and_test_never_share_text_and_references_are_never_support(seed):
    tasks, _ = grid.draw_tasks(read_dataset(SPEECH).utterances, (1, 2), 1, 3, seed)
    for t in tasks:
        assert not {text_key(u.text) for u in t.support} & {text_key(u.text) for u in t.test}
        assert not {u.audio for u in t.support} & {u.audio for u in t.test}
        assert all(u.speaker == t.speaker for u in (*t.support, *t.test))
    by_speaker = {}
    for t in tasks:  # every method and k of a speaker synthesizes the same sentences
        assert by_speaker.setdefault(t.speaker, t.test) == t.test


def test_small_speakers_are_reported_and_skipped():
    tasks, skipped = grid.draw_tasks(read_dataset(SPEECH).utterances, (1, 5), 2, 1, 0)
    assert {len(t.support) for t in tasks} == {1}
    assert set(skipped) == {"awb", "joe", "kokoro_jf_alpha", "slt"}
    assert "k = 5" in skipped["slt"]


def test_method_names_parse_and_refuse_typos():
    m = grid.parse_method("finetune-sgd:batching=minibatch:batch_size=2")
    assert (m.init, m.checkpoint, m.overrides) == \
        ("pretrained", "pretrained", (("batching", "minibatch"), ("batch_size", "2")))
    assert grid.parse_method("reptile").checkpoint == "reptile"
    for bad in ("mamll", "finetune-sgd:lr", "finetune-sgd:momentum=1",
                "finetune-adam:proximal=much", "finetune-adam:lock_timing=maybe",
                "finetune-adam:start=nowhere", "finetune-adam:batching=all"):
        with pytest.raises(ValueError):
            grid.parse_method(bad)
    guarded = grid.parse_method("finetune-encoder:lock_timing=1:proximal=0.5:terms=mel+postnet"
                                ":groups=embedding+adapters:early_stop=0")
    assert grid.option_values(guarded.overrides) == {
        "lock_timing": True, "proximal": 0.5, "terms": ("mel", "postnet"),
        "groups": ("embedding", "adapters"), "early_stop": False}


def test_run_writes_every_record_and_resume_skips_finished_work(tmp_path, checkpoints):
    out = tmp_path / "out"
    summary = benchmark.run(options(out, checkpoints), FakeScorer(), fake_vocoder)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    # 2 methods x 4 speakers x 1 k x 2 tasks x 2 steps x 2 sentences
    assert len(records) == 2 * 4 * 2 * 2 * 2
    for r in records:
        assert not set(r["support"]) & set(r["references"])
        assert all(r[f] >= 0 for f in ("adapt_cpu_seconds", "synthesis_cpu_seconds",
                                       "score_cpu_seconds"))
        assert r["vocoder"] == "test"
    assert summary["config"]["vocoder"] == "test"
    assert {(r["method"], r["steps"]) for r in summary["rows"]} == \
        {(m, n) for m in ("finetune-adam", "finetune-sgd") for n in (0, 1)}
    assert all(r["n"] == 16 for r in summary["rows"])
    for name in ("summary.json", "summary.csv", "report.md", "secs_vs_steps.png",
                 "wer_vs_steps.png", "secs_vs_wer.png", "references.csv", "steps_to_match.csv"):
        assert (out / name).stat().st_size > 0
    reference = json.loads((out / "summary.json").read_text())["reference"]
    assert set(reference) == {"engine"} and set(reference["engine"]) == {"real", "vocoded"}

    FakeScorer.calls = FakeScorer.clips_heard = 0
    benchmark.run(options(out, checkpoints), FakeScorer(), fake_vocoder)
    assert FakeScorer.calls == 0  # nothing left to do, references cached

    # the finished run read against another baseline: its tables go to --report-dir, the
    # run's own tables stay, nothing is judged again
    own = (out / "report.md").read_text()
    other = out / "vs_sgd"
    again = benchmark.run(options(out, checkpoints, baseline="finetune-sgd", report_dir=other),
                          FakeScorer(), fake_vocoder)
    assert FakeScorer.calls == 0 and (out / "report.md").read_text() == own
    text = (other / "report.md").read_text()
    assert "against `finetune-sgd`" in text
    # the plots show the same rows whatever the baseline: linked from the run folder, not copied
    for name in ("secs_vs_steps.png", "wer_vs_steps.png", "secs_vs_wer.png"):
        assert not (other / name).exists() and f"](../{name})" in text
        assert (out / name).stat().st_size > 0
    # a report outside the run folder keeps its own (it may be published without the run)
    apart = tmp_path / "apart"
    benchmark.run(options(out, checkpoints, baseline="finetune-sgd", report_dir=apart),
                  FakeScorer(), fake_vocoder)
    assert (apart / "secs_vs_steps.png").stat().st_size > 0
    assert "](secs_vs_steps.png)" in (apart / "report.md").read_text()
    assert {r["method"]: r["p_vs_finetune"] is None for r in again["rows"]} == \
        {"finetune-sgd": True, "finetune-adam": False}
    lines = (out / "results.jsonl").read_text().splitlines()
    # interrupted: finetune-sgd's last two speakers lost (2 tasks x 2 steps x 2 sentences each)
    (out / "results.jsonl").write_text("\n".join(lines[:-16]) + "\n{\"cut off")
    benchmark.run(options(out, checkpoints), FakeScorer(), fake_vocoder)
    # judged again: their step-1 clips, once per speaker (both draws of k = 1 from these
    # 3-clip speakers are the same clip, so the same voice); step 0 is the start that
    # finetune-adam's records already hold
    assert (FakeScorer.calls, FakeScorer.clips_heard) == (2, 4)
    again = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()
             if x.startswith("{\"speaker")]
    assert len({(r["method"], r["speaker"], r["seed"], r["steps"], r["text"]) for r in again}) \
        == len(records)


def test_a_resume_with_more_test_sentences_measures_them(tmp_path, checkpoints):
    """A unit is done when every sentence this run wants of it is recorded with the same support
    clips: a rerun with more test sentences (and so other draws) measures them and reports
    every record it wants, none twice."""
    out = tmp_path / "out"
    few = benchmark.run(options(out, checkpoints, test_sentences=1, methods=("finetune-adam",)),
                        FakeScorer(), fake_vocoder)
    more = benchmark.run(options(out, checkpoints, test_sentences=2, methods=("finetune-adam",)),
                         FakeScorer(), fake_vocoder)
    assert all(r["n"] == 4 * 2 for r in few["rows"])  # 4 speakers x 2 draws x 1 sentence
    assert more["rows"] and all(r["n"] == 4 * 2 * 2 for r in more["rows"])
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    keys = [(r["method"], r["speaker"], r["seed"], r["steps"], tuple(r["support"]), r["text"])
            for r in records]
    assert len(keys) == len(set(keys))


def test_bad_data_is_reported_not_fatal(tmp_path, checkpoints):
    data = tmp_path / "data"
    shutil.copytree(SPEECH, data)
    (data / "slt" / "slt_03.wav").write_bytes(b"not audio")  # unreadable: left out when read
    (data / "joe" / "joe_02.txt").write_text("")  # empty transcript
    summary = benchmark.run(options(tmp_path / "out", checkpoints, data, tasks=1),
                            FakeScorer(), fake_vocoder)
    problems = " ".join(summary["problems"])
    assert "unreadable_audio" in problems and "speaker slt" in problems
    assert {r["speakers"] for r in summary["rows"]} == {2}  # awb and kokoro


def test_missing_data_is_a_clear_error(tmp_path, checkpoints, capsys):
    rc = benchmark.main(["--data", str(tmp_path / "nowhere"), "--checkpoint-dir",
                         str(checkpoints), "--out", str(tmp_path / "out")])
    assert rc == 2 and "no such data" in capsys.readouterr().err
    with pytest.raises(benchmark.BenchmarkError, match="no checkpoint"):
        benchmark.run(options(tmp_path / "o", checkpoints, methods=("reptile",)), FakeScorer(),
                      fake_vocoder)


def test_a_checkpoint_not_meta_learned_is_refused_with_evals_own_flags(tmp_path, checkpoints,
                                                                      capsys):
    """A meta method's folder holding a checkpoint that was not meta-learned is refused in
    python -m eval's words (--checkpoint-dir, --methods), not python -m metatts adapt's
    (--checkpoint, --init), before anything is written."""
    shutil.copytree(checkpoints / "pretrained", tmp_path / "ckpts" / "maml")
    rc = benchmark.main(["--data", str(SPEECH), "--checkpoint-dir", str(tmp_path / "ckpts"),
                         "--methods", "maml", "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and f"{tmp_path / 'ckpts' / 'maml'} is not one" in err
    assert "--checkpoint-dir" in err and "--methods" in err
    assert "--checkpoint" not in err.replace("--checkpoint-dir", "") and "--init" not in err
    assert not (tmp_path / "out").exists()


def test_bootstrap_matches_hand_computed_values():
    iv = stats.cluster_bootstrap([1.0, 1.0, 3.0, 3.0], ["a", "a", "b", "b"], 500, 0)
    assert (iv.mean, iv.n, iv.clusters) == (2.0, 4, 2)
    assert (iv.low, iv.high) == (1.0, 3.0)  # resamples of two clusters: means 1, 2 or 3
    same = stats.cluster_bootstrap([0.5] * 6, [1, 1, 2, 2, 3, 3], 100, 0)
    assert (same.low, same.high) == (0.5, 0.5)


def test_voice_bootstrap_resamples_voices_or_one_voices_draws():
    # one voice: the bootstrap of its draws (means 1, 2 or 3 from two draws)
    one = stats.voice_bootstrap([1.0, 1.0, 3.0, 3.0], ["v"] * 4, ["a", "a", "b", "b"], 500, 0)
    assert (one.mean, one.n, one.clusters, one.low, one.high) == (2.0, 4, 2, 1.0, 3.0)
    # two voices: each voice's clips resampled whole, whatever its draws
    two = stats.voice_bootstrap([1.0, 1.0, 3.0, 3.0], ["v", "v", "w", "w"], ["a", "b", "c", "d"],
                                500, 0)
    assert (two.clusters, two.low, two.high) == (2, 1.0, 3.0)
    # voices that differ widen the interval beyond the draws-only bootstrap of the same clips
    rng = np.random.default_rng(0)
    values, voices, draws = [], [], []
    for v in range(6):
        for d in range(3):
            for _ in range(5):
                values.append(0.1 * v + rng.normal(0, 0.01))
                voices.append(v)
                draws.append((v, d))
    wide = stats.voice_bootstrap(values, voices, draws, 1000, 0)
    narrow = stats.cluster_bootstrap(values, draws, 1000, 0)
    assert wide.clusters == 6 and wide.high - wide.low > 1.5 * (narrow.high - narrow.low)
    with pytest.raises(ValueError, match="3 values but 2 voice"):
        stats.voice_bootstrap([1.0, 2.0, 3.0], [1, 2], [1, 2, 3])


def test_paired_test_matches_hand_computed_values():
    # all five differences positive with ranks 1..5: exact two-sided p = 2 / 2**5
    test = stats.paired_test({i: i + i + 1.0 for i in range(5)}, {i: float(i) for i in range(5)})
    assert test.pairs == 5 and test.p == pytest.approx(0.0625) and test.mean_difference == 3.0
    assert stats.paired_test({1: 1.0}, {2: 1.0}).pairs == 0
    assert stats.paired_test({1: 1.0}, {1: 1.0}).p is None


def test_summary_rows_on_a_small_table():
    def rec(method, speaker, text, wer, errors, words, secs):
        return {"method": method, "shots": 1, "steps": 5, "speaker": speaker, "seed": 0,
                "text": text, "wer": wer, "errors": errors, "words": words, "secs": secs,
                "mos": 3.0, "adapt_seconds": 1.0}

    table = [rec("finetune-adam", "a", "x", 0.5, 1, 2, 0.2),
             rec("finetune-adam", "b", "y", 0.0, 0, 8, 0.4),
             rec("maml", "a", "x", 0.0, 0, 2, 0.5),
             rec("maml", "b", "y", 0.25, 2, 8, 0.6)]
    rows = {r["method"]: r for r in report.summary_rows(table, "finetune-adam", resamples=100)}
    maml = rows["maml"]
    assert maml["n"] == 2 and maml["wer"] == pytest.approx(0.125)
    assert maml["wer_pooled"] == pytest.approx(2 / 10)
    assert maml["secs"] == pytest.approx(0.55) and maml["mos"] == 3.0
    assert maml["secs_ci"] == [pytest.approx(0.5), pytest.approx(0.6)]
    assert maml["p_vs_finetune"]["pairs"] == 2 and maml["p_vs_finetune"]["secs"] == \
        pytest.approx(0.5)  # two positive differences: exact p = 2 / 2**2
    assert rows["finetune-adam"]["p_vs_finetune"] is None
    assert maml["secs_other"] is None and maml["gap_closed_other"] is None  # older records
    assert "ecapa other" not in report._p(maml)


def test_the_report_reads_similarity_without_the_own_sentence_where_records_have_it():
    from eval import readable

    def rec(method, speaker, seed, text, secs, other):
        return {"method": method, "shots": 5, "steps": 10, "speaker": speaker, "seed": seed,
                "text": text, "wer": 0.0, "errors": 0, "words": 4, "secs": secs,
                "secs_other": other, "mos": 3.0, "adapt_seconds": 1.0, "group": "natural"}

    table = [rec(m, s, seed, t, base + 0.1 * (m == "meta"), base - 0.05 + 0.1 * (m == "meta"))
             for m in ("meta", "finetune-adam") for s, base in (("a", 0.5), ("b", 0.6))
             for seed in (0, 1) for t in ("x", "y")]
    bounds = {"secs": {"a": readable.Bounds(0.1, 0.8), "b": readable.Bounds(0.1, 0.7)}}
    rows = {r["method"]: r for r in report.summary_rows(table, "finetune-adam", bounds=bounds,
                                                        resamples=200)}
    meta = rows["meta"]
    assert meta["secs_other"] == pytest.approx(0.6) and meta["secs"] == pytest.approx(0.65)
    # the gap closed against the ECAPA floor and ceiling: a (0.55-0.1)/0.7, b (0.65-0.1)/0.6
    assert meta["gap_closed_other"] == pytest.approx((0.45 / 0.7 + 0.55 / 0.6) / 2)
    assert meta["secs_other_ci"] == [pytest.approx(0.55), pytest.approx(0.65)]  # by voice
    assert meta["p_vs_finetune"]["secs_other"] == pytest.approx(2 / 2 ** 8)  # 8 clips higher
    lines = report._table(list(rows.values()), "-")
    assert "| ECAPA, other sentences [95% CI] | gap closed, other sentences |" in lines[0]
    assert lines[0].count("|") - 1 == lines[1].count("|") - 1 == 16
    assert "| 0.600 [0.550, 0.650] | 78 % |" in next(l for l in lines if l.startswith("| meta"))
    assert "ecapa other " in report._p(meta)


@pytest.mark.slow
def test_end_to_end_with_real_models(tmp_path, checkpoints):
    """One speaker, one shot, steps 0 and 1, the tiny model, real HiFi-GAN, Whisper tiny.en,
    ECAPA and DNSMOS."""
    data = tmp_path / "data"
    shutil.copytree(SPEECH / "slt", data / "slt")
    out = tmp_path / "out"
    rc = benchmark.main(["--data", str(data), "--checkpoint-dir", str(checkpoints), "--out",
                         str(out), "--methods", "finetune-adam", "--shots", "1", "--steps",
                         "0,1", "--tasks", "1", "--test-sentences", "2", "--no-progress"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["steps"] for r in summary["rows"]] == [0, 1] and summary["rows"][0]["n"] == 2
    real = summary["reference"]["engine"]["real"]  # slt is an engine voice
    assert real["wer"] < 0.3 and real["secs"] > 0.5 and 1 <= real["mos"] <= 5
    assert summary["config"]["asr_model"] == "tiny.en"


def test_one_adaptation_per_task_gives_what_separate_step_counts_give(tmp_path, checkpoints,
                                                                       monkeypatch):
    """Units differing only in steps share one adaptation to the largest count; their records
    equal those of runs with each step count alone."""
    from eval import runner

    calls = []
    real_adapt = runner.adapt
    monkeypatch.setattr(runner, "adapt", lambda *a, **k: calls.append(a[2].steps) or
                        real_adapt(*a, **k))
    together = tmp_path / "together"
    benchmark.run(options(together, checkpoints, steps=(0, 1, 3), tasks=1, speakers=1),
                  FakeScorer(), fake_vocoder)
    assert calls == [3, 3]  # one per method (finetune-adam, finetune-sgd), not per step count
    got = {(r["method"], r["steps"], r["text"]): r for r in runner.read_results(
        together / "results.jsonl")}
    for steps in (1, 3):
        alone = tmp_path / f"alone{steps}"
        benchmark.run(options(alone, checkpoints, steps=(steps,), tasks=1, speakers=1),
                      FakeScorer(), fake_vocoder)
        for r in runner.read_results(alone / "results.jsonl"):
            mine = got[(r["method"], r["steps"], r["text"])]
            assert mine["final_loss"] == pytest.approx(r["final_loss"], rel=1e-5)
            assert mine["audio_seconds"] == r["audio_seconds"]


def test_finetune_from_the_encoder_starts_at_each_draws_estimate(tmp_path, checkpoints):
    """finetune-encoder: step 0 is the encoder's estimate of that draw's support clips, so two
    draws give two voices; it is a default method only for a model with an encoder, and named
    for one without, it is refused."""
    from eval import runner

    v2 = tmp_path / "v2"
    torch.manual_seed(0)
    config = load_config(TINY.parent / "tiny_v2.json",
                         {"model": {"n_symbols": len(SYMBOLS), "n_speakers": 2},
                          "data": {"tokens": "phonemes"}})
    save_checkpoint(v2 / "pretrained", FastSpeech2(config.model, config.loss), config,
                    SYMBOLS, ("a", "b"))
    out = tmp_path / "out"
    benchmark.run(options(out, v2, methods=("finetune-encoder", "finetune-adam",
                                            "finetune-adam:frames=0"), steps=(0,),
                          tasks=2, test_sentences=1, speakers=1), FakeScorer(), fake_vocoder)
    records = runner.read_results(out / "results.jsonl")
    encoder = {r["seed"]: r["voice"] for r in records if r["method"] == "finetune-encoder"}
    mean = {r["seed"]: r["voice"] for r in records if r["method"] == "finetune-adam:frames=0"}
    framed = {r["seed"]: r["voice"] for r in records if r["method"] == "finetune-adam"}
    assert len(encoder) == 2 and len(set(encoder.values())) == 2  # one voice per draw
    assert len(set(mean.values())) == 1  # the mean start ignores the clips
    assert not set(encoder.values()) & set(mean.values())
    # ... but not the clips' frames (metatts.frames), on by default: one voice per draw
    assert len(framed) == 2 and len(set(framed.values())) == 2
    assert not set(framed.values()) & set(mean.values())

    summary = benchmark.run(options(tmp_path / "v1", checkpoints, steps=(0,), tasks=1,
                                    speakers=1), FakeScorer(), fake_vocoder)
    assert "finetune-encoder" not in summary["config"]["methods"]  # not a default on v1
    with pytest.raises(benchmark.BenchmarkError, match="no speaker encoder"):
        benchmark.run(options(tmp_path / "v1b", checkpoints, methods=("finetune-encoder",),
                              steps=(0,), tasks=1, speakers=1), FakeScorer(), fake_vocoder)


def test_finetune_from_the_encoder_takes_the_small_steps_its_start_needs(checkpoints):
    """finetune-encoder is the meta-learned start's twin without meta-training: small Adam steps
    with the timing locked (Adam 0.01 from the encoder broke speech);
    fine-tuning from the mean keeps its own defaults, and a method's overrides still win."""
    from eval import runner
    from metatts.adapt import ENCODER_FINETUNE, load_base

    base = load_base("pretrained", checkpoints / "pretrained")
    encoder = runner.settings_for(grid.parse_method("finetune-encoder"), base, 10, 3)
    assert (encoder.start, encoder.optimizer, encoder.lr, encoder.groups, encoder.lock_timing,
            encoder.steps, encoder.seed) == ("encoder", "adam", ENCODER_FINETUNE["lr"],
                                             ENCODER_FINETUNE["groups"], True, 10, 3)
    assert encoder.lr <= 1e-3  # Adam 0.01 from the encoder broke the speech
    mean = runner.settings_for(grid.parse_method("finetune-adam"), base, 10, 3)
    assert (mean.start, mean.lr, mean.lock_timing) == ("mean", 1e-2, False)
    faster = runner.settings_for(grid.parse_method("finetune-encoder:lr=0.01:lock_timing=0"),
                                 base, 10, 3)
    assert (faster.lr, faster.lock_timing, faster.start) == (0.01, False, "encoder")


def test_a_resumed_run_refuses_records_of_other_settings(tmp_path, checkpoints, monkeypatch):
    out = tmp_path / "out"
    benchmark.run(options(out, checkpoints), FakeScorer(), fake_vocoder)
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len({r["setup"] for r in records if r["method"] == "finetune-adam"}) == 2  # per seed
    # the shipped defaults change (here: pieces of 60 frames) between the run and its resume
    from metatts import adapt as adapt_mod

    monkeypatch.setattr(adapt_mod, "PIECE_FRAMES", 60)
    FakeScorer.calls = 0
    with pytest.raises(benchmark.BenchmarkError, match="other adaptation settings"):
        benchmark.run(options(out, checkpoints), FakeScorer(), fake_vocoder)
    assert FakeScorer.calls == 0  # refused before anything was judged
    # records written before setups were recorded are taken as they are
    (out / "results.jsonl").write_text("".join(
        json.dumps({k: v for k, v in r.items() if k != "setup"}) + "\n" for r in records))
    benchmark.run(options(out, checkpoints), FakeScorer(), fake_vocoder)
    assert FakeScorer.calls == 0


def test_a_resume_with_another_vocoder_path_takes_none_of_its_records(tmp_path, checkpoints,
                                                                     monkeypatch):
    """Clips made with one vocoder path (bf16, fast, exact) are neither kept in the tables of a
    resume with another (refused, as records of other settings are) nor reused for other units;
    records older than the vocoder field count as made with the default path."""
    from eval import runner

    def other_vocoder(mel):
        return fake_vocoder(mel)

    other_vocoder.mode = "other"
    out = tmp_path / "out"
    grid_opts = {"steps": (0,), "tasks": 1, "speakers": 1}
    adam = options(out, checkpoints, methods=("finetune-adam",), **grid_opts)
    sgd = options(out, checkpoints, methods=("finetune-sgd",), **grid_opts)
    benchmark.run(adam, FakeScorer(), fake_vocoder)
    written, refs = (out / "results.jsonl").read_text(), (out / "references.jsonl").read_text()
    FakeScorer.calls = 0
    with pytest.raises(benchmark.BenchmarkError,
                       match="made with the test vocoder path, and this run makes them with other"):
        benchmark.run(adam, FakeScorer(), other_vocoder)
    assert FakeScorer.calls == 0 and (out / "results.jsonl").read_text() == written
    assert (out / "references.jsonl").read_text() == refs  # refused before any work
    # finetune-sgd's step-0 voice is finetune-adam's (the mean start, the same clips' frames):
    # with the same path its clips are reused, with another they are made and judged again
    same = tmp_path / "same"
    shutil.copytree(out, same)
    FakeScorer.clips_heard = 0
    benchmark.run(options(same, checkpoints, methods=("finetune-sgd",), **grid_opts),
                  FakeScorer(), fake_vocoder)
    assert FakeScorer.clips_heard == 0
    benchmark.run(sgd, FakeScorer(), other_vocoder)
    # its 2 clips, and the references measured again (real and vocoded: another vocoded path)
    vocoded = [r for r in runner.read_results(out / "references.jsonl") if r["kind"] == "vocoded"]
    assert FakeScorer.clips_heard == 2 + 2 * len(vocoded)
    assert {r["vocoder"] for r in vocoded} == {"other"}
    made = {r["method"]: r["vocoder"] for r in runner.read_results(out / "results.jsonl")}
    assert made == {"finetune-adam": "test", "finetune-sgd": "other"}

    # records written before the field: the default path's (here $METATTS_VOCODER's), reused
    # as before, and a clip reused from one is recorded with its path
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.jsonl").write_text("".join(
        json.dumps({k: v for k, v in json.loads(line).items() if k != "vocoder"}) + "\n"
        for line in written.splitlines()))
    (old / "references.jsonl").write_text("".join(  # references older than the field too
        json.dumps({k: v for k, v in json.loads(line).items() if k != "vocoder"}) + "\n"
        for line in refs.splitlines()))
    monkeypatch.setenv("METATTS_VOCODER", "test")
    with pytest.raises(benchmark.BenchmarkError, match="made with the test vocoder path"):
        benchmark.run(options(old, checkpoints, methods=("finetune-adam",), **grid_opts),
                      FakeScorer(), other_vocoder)
    FakeScorer.calls = 0
    for methods in (("finetune-adam",), ("finetune-adam", "finetune-sgd")):
        benchmark.run(options(old, checkpoints, methods=methods, **grid_opts), FakeScorer(),
                      fake_vocoder)
    assert FakeScorer.calls == 0
    records = runner.read_results(old / "results.jsonl")
    assert [r.get("vocoder") for r in records if r["method"] == "finetune-sgd"] == ["test"] * 2


def test_a_record_without_a_key_field_is_refused_with_its_line(tmp_path, checkpoints, capsys):
    """A resume (and --plan --costs-from) reads a record missing a field it keys records on as
    a bad line of that file, as it reads a line that is not a record, not as a KeyError."""
    from eval import runner

    out = tmp_path / "out"
    out.mkdir()
    record = {"method": "finetune-adam", "speaker": "awb", "shots": 1, "seed": 0, "steps": 1,
              "text": "x", "adapt_seconds": 1.0, "synthesis_seconds": 1.0, "score_seconds": 1.0}
    for name in ("method", "steps"):
        lines = json.dumps(record) + "\n" + json.dumps(
            {k: v for k, v in record.items() if k != name}) + "\n"
        (out / "results.jsonl").write_text(lines)
        with pytest.raises(runner.ResultsError, match=f"results.jsonl:2: a record without "
                                                      f"'{name}'"):
            benchmark.run(options(out, checkpoints, methods=("finetune-adam",)), FakeScorer(),
                          fake_vocoder)
        assert (out / "results.jsonl").read_text() == lines  # refused before any unit
        assert benchmark.main(["--plan", "--data", str(SPEECH), "--checkpoint-dir",
                               str(checkpoints), "--costs-from", str(out)]) == 2
        assert f"results.jsonl:2: a record without '{name}'" in capsys.readouterr().err


def test_the_command_refuses_what_it_cannot_measure(tmp_path, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("mine")
    for args, message in [(["--speakers", "-1"], "--speakers must be 0"),
                          (["--shots", "0,5"], "--shots are support clip counts"),
                          (["--out", str(a_file)], "--out"),
                          (["--report-dir", str(a_file)], "--report-dir"),
                          (["--costs-from", str(tmp_path)], "no results.jsonl there")]:
        with pytest.raises(SystemExit):
            benchmark.parse_args(["--plan", *args])
        assert message in capsys.readouterr().err, args
    assert a_file.read_text() == "mine"
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--costs-from", str(tmp_path)])
    assert "add --plan" in capsys.readouterr().err


def test_out_refuses_a_folder_of_other_files_but_resumes_its_own_run(tmp_path, checkpoints,
                                                                    capsys):
    """--out and --report-dir: a folder holding files that are not a run (or report) of the
    benchmark is refused before any work, and left as it was, unless --force; an empty folder,
    a run's own folder (a resume) and a report's own folder are written into as before."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "report.md").write_text("my own notes")
    (notes / "summary.json").write_text('{"mine": 1}')
    run = tmp_path / "run"
    grid_args = ["--data", str(SPEECH), "--checkpoint-dir", str(checkpoints), "--methods",
                 "finetune-adam", "--steps", "0", "--tasks", "1", "--test-sentences", "1",
                 "--speakers", "1", "--no-progress"]
    for flag, args in (("--out", ["--out", str(notes)]),
                       ("--report-dir", ["--out", str(run), "--report-dir", str(notes)])):
        with pytest.raises(SystemExit):
            benchmark.parse_args([*grid_args, *args])
        err = capsys.readouterr().err
        assert f"{flag} {notes} holds files that are not a python -m eval run or report " \
               "(report.md, summary.json)" in err and "--force" in err
        assert benchmark.parse_args([*grid_args, *args, "--force"]).out == Path(args[1])
        assert benchmark.parse_args([*grid_args, *args, "--plan"])  # --plan writes nothing
    assert (notes / "report.md").read_text() == "my own notes"
    assert (notes / "summary.json").read_text() == '{"mine": 1}'

    run.mkdir()  # empty: a new run
    benchmark.run(benchmark.parse_args([*grid_args, "--out", str(run)]), FakeScorer(),
                  fake_vocoder)
    # its own folder is a run to resume, and its report folder a report to write again
    other = ["--out", str(run), "--baseline", "finetune-sgd", "--report-dir", str(run / "vs")]
    benchmark.run(benchmark.parse_args([*grid_args, *other]), FakeScorer(), fake_vocoder)
    assert benchmark.parse_args([*grid_args, *other]).report_dir == run / "vs"
    # a run killed after its first file is still its own
    for path in run.iterdir():
        if path.name != "reference_embeddings.npz":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert benchmark.parse_args([*grid_args, "--out", str(run)]).out == run


def test_a_baseline_not_measured_is_said(tmp_path, checkpoints):
    summary = benchmark.run(options(tmp_path / "out", checkpoints, methods=("finetune-sgd",)),
                            FakeScorer(), fake_vocoder)
    assert any("--baseline finetune-adam is not among the methods" in p
               for p in summary["problems"])


def test_a_clip_is_also_scored_without_the_real_clip_of_its_own_sentence():
    """``secs`` averages a synthesized clip's cosine over every reference, its own sentence's
    real clip among them, where the ceiling compares real clips of other sentences only;
    ``secs_other`` leaves that clip out."""
    from eval.references import Bank
    from eval.runner import measure_clips
    from eval.scorer import Measured
    from metatts.data import Utterance

    test = tuple(Utterance(f"r{i}", "v", text, Path(f"r{i}.wav"), 1.0)
                 for i, text in enumerate(["One two.", "Three four.", "Five six."]))
    task = grid.Task("v", 0, 0, (), test, "natural")
    refs = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    bank = Bank(tuple(u.id for u in test), refs, None)

    class Judge:
        def measure(self, wavs, sample_rate):
            return [Measured("one two", np.array([1.0, 0.0]), None, 3.0) for _ in wavs]

    [out] = measure_clips([np.zeros(160)], ["one two"], task, bank, Judge(), [(0.1, 0.1)])
    assert out["secs"] == pytest.approx((1.0 + 0.0 + 0.6) / 3)
    assert out["secs_other"] == pytest.approx((0.0 + 0.6) / 2)  # "One two." left out
