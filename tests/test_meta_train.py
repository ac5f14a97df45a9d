"""Meta-training: each algorithm writes a meta-learned checkpoint that adaptation accepts, resume
is exact, validation logs post-adaptation query losses, two gloo processes share a meta-batch."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import SPEECH
from metatts.adapt import (ADAPT_STEPS, adapt, default_settings, load_base, load_clips,
                           with_changes)
from metatts.cli.train import main
from metatts.model.checkpoint import SHIPPED, load_checkpoint, shipped_checkpoint
from metatts.model.config import ConfigError, load_config
from metatts.train.logging import read_log

ROOT = Path(__file__).resolve().parents[1]
META_TINY = ROOT / "configs" / "meta_tiny.json"


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, features):
    """The tiny model pretrained for 2 steps, without dropout (meta-training is deterministic)."""
    run = tmp_path_factory.mktemp("pretrained") / "run"
    assert main(["--config", str(ROOT / "configs" / "tiny.json"), "--quiet",
                 "--set", f"train.run_dir={run}", "--set", "train.steps=2",
                 "--set", f'data.datasets=["{SPEECH}"]', "--set", f"data.cache_dir={features}",
                 "--set", "model.variance_dropout=0.0"]) == 0
    return run


def args(run_dir, pretrained, features, steps, *extra):
    return ["--config", str(META_TINY), "--quiet",
            "--set", f"train.run_dir={run_dir}", "--set", f"meta.steps={steps}",
            "--set", f"meta.init={pretrained}", "--set", f'data.datasets=["{SPEECH}"]',
            "--set", f"data.cache_dir={features}", "--set", "train.checkpoint_every=2",
            "--set", "train.validate_every=2", *extra]


@pytest.mark.parametrize("algo", ["maml", "fomaml", "reptile"])
def test_each_algorithm_writes_a_checkpoint_adaptation_starts_from(
        algo, tmp_path, pretrained, features, capsys):
    assert main(args(tmp_path / "run", pretrained, features, 2, "--algo", algo)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 2 and summary["train"]["query"] > 0
    base = load_base("meta", tmp_path / "run")
    assert base.step == 2 and base.config.meta.algo == algo
    assert base.config.meta.init == str(pretrained)
    start = load_checkpoint(pretrained)
    moved = {n for n, p in base.model.named_parameters()
             if not torch.equal(p, dict(start.model.named_parameters())[n])}
    assert "speaker.new" in moved  # the new-voice start is meta-learned by every algorithm here
    adapted = set(base.model.parameter_groups()["conditional_norms"])
    if algo == "reptile":  # Reptile moves only what adapts
        assert moved <= adapted
    else:  # (FO)MAML also meta-learns the shared network
        assert moved - adapted
    assert "speaker.table.weight" not in moved
    settings = default_settings("meta", base)
    assert (settings.groups, settings.steps, settings.lr) == (("embedding", "conditional_norms"),
                                                             ADAPT_STEPS, 0.1)
    clips = load_clips(sorted((SPEECH / "slt").glob("*.wav"))).clips
    assert len(adapt(clips, base, with_changes(settings, steps=2)).losses) == 2


def test_outer_groups_keep_the_rest_of_the_pretrained_model(tmp_path, pretrained, features):
    groups = '["embedding", "conditional_norms"]'
    assert main(args(tmp_path / "run", pretrained, features, 2,
                     "--set", f"meta.outer_groups={groups}")) == 0
    base, start = load_checkpoint(tmp_path / "run"), load_checkpoint(pretrained)
    before = dict(start.model.named_parameters())
    moved = {n for n, p in base.model.named_parameters() if not torch.equal(p, before[n])}
    assert "speaker.new" in moved and moved <= set(base.model.parameter_groups()["conditional_norms"])
    with pytest.raises(ConfigError, match="outer_groups"):
        load_config(META_TINY, {"meta": {"outer_groups": ["encoder"]}})


def test_meta_checkpoint_keeps_the_post_filter_of_its_init(tmp_path, pretrained, features):
    import shutil

    from metatts.model.checkpoint import find_checkpoint

    init = tmp_path / "init"
    shutil.copytree(find_checkpoint(pretrained), init)
    meta = json.loads((init / "model.json").read_text())
    meta["config"]["postfilter"] = {"spectral": 1.6, "temporal": 1.1}
    (init / "model.json").write_text(json.dumps(meta))
    assert main(args(tmp_path / "run", init, features, 1)) == 0
    kept = load_checkpoint(tmp_path / "run").config.postfilter
    assert (kept.spectral, kept.temporal) == (1.6, 1.1)


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path, pretrained, features):
    assert main(args(tmp_path / "straight", pretrained, features, 4)) == 0
    assert main(args(tmp_path / "resumed", pretrained, features, 2)) == 0
    assert main(args(tmp_path / "resumed", pretrained, features, 4, "--resume")) == 0
    for name in ("model.safetensors", "training.safetensors"):
        a = load_file(tmp_path / "straight/checkpoints/step_00000004" / name)
        b = load_file(tmp_path / "resumed/checkpoints/step_00000004" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    logs = [[{k: v for k, v in r.items() if k != "steps_per_second"}
             for r in read_log(tmp_path / d / "log.jsonl")] for d in ("straight", "resumed")]
    assert logs[0] == logs[1]


@pytest.mark.parametrize("algo", ["maml", "fomaml"])
def test_meta_sgd_learns_inner_rates_that_adaptation_then_uses(
        algo, tmp_path, pretrained, features):
    meta_sgd = ("--algo", algo, "--set", "meta.learn_inner_lrs=true",
                "--set", "meta.lrs_outer_lr=0.01")
    assert main(args(tmp_path / "run", pretrained, features, 2, *meta_sgd)) == 0
    base = load_base("meta", tmp_path / "run")
    assert base.inner_lrs is not None
    adapted = set(base.model.parameter_groups()["embedding"]
                  + base.model.parameter_groups()["conditional_norms"])
    assert set(base.inner_lrs) == adapted - {"speaker.table.weight"}
    rates = torch.cat([r.reshape(-1) for r in base.inner_lrs.values()])
    assert (rates >= 0).all() and not torch.all(rates == 0.1)  # moved from inner.lr, kept >= 0
    settings = default_settings("meta", base)
    assert settings.learned_lrs and settings.optimizer == "sgd"
    clips = load_clips(sorted((SPEECH / "slt").glob("*.wav"))).clips
    learned = adapt(clips, base, settings).voice
    plain = adapt(clips, base, with_changes(settings, lr=0.1)).voice
    assert not with_changes(settings, lr=0.1).learned_lrs  # a given rate replaces the learned
    assert learned.settings["learned_lrs"] and not plain.settings["learned_lrs"]
    assert any(not torch.equal(learned.params[n], plain.params[n]) for n in learned.params)
    # resume restores the rates and their optimizer state: same as one uninterrupted run
    assert main(args(tmp_path / "straight", pretrained, features, 4, *meta_sgd)) == 0
    assert main(args(tmp_path / "run", pretrained, features, 4, *meta_sgd, "--resume")) == 0
    for name in ("model.safetensors", "inner_lrs.safetensors", "training.safetensors"):
        a = load_file(tmp_path / "straight/checkpoints/step_00000004" / name)
        b = load_file(tmp_path / "run/checkpoints/step_00000004" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    with pytest.raises(ConfigError, match="learn_inner_lrs"):
        load_config(META_TINY, {"meta": {"algo": "reptile", "learn_inner_lrs": True}})


def test_per_tensor_rates_of_an_adam_inner_loop_are_learned_alone(tmp_path, pretrained, features):
    """meta.lrs_per_tensor with inner Adam and no outer groups: only one rate per adapted tensor
    is meta-learned, the weights stay the pretrained ones, and adaptation steps with the rates."""
    per_tensor = ("--algo", "fomaml", "--set", "meta.learn_inner_lrs=true",
                  "--set", "meta.lrs_per_tensor=true", "--set", "meta.outer_groups=[]",
                  "--set", "meta.inner.optimizer=adam", "--set", "meta.inner.lr=0.01",
                  "--set", "meta.lrs_outer_lr=0.002")
    assert main(args(tmp_path / "run", pretrained, features, 2, *per_tensor)) == 0
    base = load_base("meta", tmp_path / "run")
    start = load_base("pretrained", pretrained)
    assert all(torch.equal(a, b) for a, b in zip(base.model.state_dict().values(),
                                                 start.model.state_dict().values()))
    params = dict(base.model.named_parameters())
    assert all(r.shape == (1,) * params[n].ndim for n, r in base.inner_lrs.items())
    rates = torch.cat([r.reshape(-1) for r in base.inner_lrs.values()])
    assert (rates >= 0).all() and not torch.all(rates == 0.01)
    settings = default_settings("meta", base)
    assert settings.learned_lrs and settings.optimizer == "adam"
    clips = load_clips(sorted((SPEECH / "slt").glob("*.wav"))).clips
    learned = adapt(clips, base, settings).voice
    plain = adapt(clips, base, with_changes(settings, lr=0.01)).voice
    assert any(not torch.equal(learned.params[n], plain.params[n]) for n in learned.params)
    with pytest.raises(ConfigError, match="lrs_per_tensor"):
        load_config(META_TINY, {"meta": {"learn_inner_lrs": True, "inner": {"optimizer": "adam"}}})
    with pytest.raises(ConfigError, match="outer_groups"):
        load_config(META_TINY, {"meta": {"outer_groups": []}})


def test_validation_logs_query_loss_after_adapting(tmp_path, pretrained, features):
    assert main(args(tmp_path / "run", pretrained, features, 2)) == 0
    val = [r for r in read_log(tmp_path / "run" / "log.jsonl") if r["split"] == "val"]
    assert [r["step"] for r in val] == [0, 2]  # before meta-training, and at validate_every
    for r in val:
        assert r["query_after_0"] > 0 and r["query_after_2"] > 0
    train = [r for r in read_log(tmp_path / "run" / "log.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert all(r["query"] > 0 and r["support_first"] > 0 and r["support_last"] > 0
               for r in train)
    assert (tmp_path / "run" / "losses.png").stat().st_size > 1000


def test_clear_errors(tmp_path, pretrained, features, capsys):
    assert main(args(tmp_path / "r", pretrained, features, 2, "--set", "meta.kk=3")) == 2
    assert "meta.kk" in capsys.readouterr().err
    assert main(args(tmp_path / "r", pretrained, features, 2, "--set", "meta.algo=maml",
                     "--set", "meta.inner.optimizer=adam")) == 2
    assert "sgd" in capsys.readouterr().err
    assert main(args(tmp_path / "r", pretrained, features, 2, "--resume")) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(args(tmp_path / "r", tmp_path / "nothing", features, 2)) == 2
    assert "no checkpoint" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="meta.k"):
        load_config(META_TINY, {"meta": {"k": 0}})


def test_shipped_checkpoint_locations(monkeypatch):
    monkeypatch.delenv("METATTS_CHECKPOINT", raising=False)
    assert shipped_checkpoint("meta") == SHIPPED / "meta" == ROOT / "checkpoints" / "meta"
    assert shipped_checkpoint("pretrained") == ROOT / "checkpoints" / "pretrained"
    monkeypatch.setenv("METATTS_CHECKPOINT", "/x/run")
    assert shipped_checkpoint("pretrained") == Path("/x/run")
    assert shipped_checkpoint("meta") == SHIPPED / "meta"
    with pytest.raises(ValueError, match="unknown init"):
        shipped_checkpoint("best")


def test_meta_configs_parse():
    for name in ("meta_tiny.json", "meta_base.json", "meta_sgd.json", "meta_v2.json"):
        assert load_config(ROOT / "configs" / name).meta is not None


@pytest.mark.slow
def test_data_parallel_meta_step_averages_the_tasks_of_two_gloo_processes(
        tmp_path, pretrained, features):
    """Two processes with one task each take the step one process takes with both tasks."""
    sgd = ("--set", "meta.outer_optimizer=sgd", "--set", "meta.outer_lr=0.01")
    assert main(args(tmp_path / "single", pretrained, features, 2, *sgd)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "metatts", "train", *args(tmp_path / "ddp", pretrained, features, 2, *sgd)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "ddp")
    assert ckpt.step == 2 and ckpt.config.meta.meta_batch == 2
    assert [r["step"] for r in read_log(tmp_path / "ddp" / "log.jsonl")
            if r["split"] == "train"] == [1, 2]
    single, start = load_checkpoint(tmp_path / "single"), load_checkpoint(pretrained)
    a, b = dict(ckpt.model.named_parameters()), dict(single.model.named_parameters())
    assert not torch.equal(b["speaker.new"], start.model.speaker.new)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_the_verifier_terms_in_meta_training_and_the_adaptation_it_leaves(
        tmp_path, pretrained, features):
    """meta.query_verifier and meta.inner.verifier: validation also reports the query clips'
    verifier term after each step count (and with meta.query_support the support clips' loss),
    and adaptation from the checkpoint steps with the inner term it was meta-trained with."""
    assert main(args(tmp_path / "run", pretrained, features, 2,
                     "--set", "meta.query_verifier=1.0", "--set", "meta.inner.verifier=0.5",
                     "--set", "meta.inner.verifier_every=2",
                     "--set", "meta.query_support=0.5")) == 0
    val = [r for r in read_log(tmp_path / "run" / "log.jsonl") if r["split"] == "val"]
    assert [r["step"] for r in val] == [0, 2]
    for r in val:
        assert 0 < r["verifier_after_0"] < 2 and 0 < r["verifier_after_2"] < 2
        # meta.query_support: the support clips' loss beside the query's, lower where the steps
        # fitted them
        assert 0 < r["support_after_2"] < r["support_after_0"]
    settings = default_settings("meta", load_base("meta", tmp_path / "run"))
    assert settings.verifier == 0.5 and settings.verifier_every == 2


def test_v2_meta_training_learns_the_encoder_start_and_adaptation_uses_it(
        tmp_path, features, capsys):
    """meta.start "encoder" with the timing lock and decoder adapters on the tiny v2 model:
    the encoder and the adapters' start move, speaker.new does not (the encoder computes the
    start), and `adapt --init meta` starts from the encoder's estimate with the lock on."""
    pretrained = tmp_path / "pretrained"
    assert main(["--config", str(ROOT / "configs" / "tiny_v2.json"), "--quiet",
                 "--set", f"train.run_dir={pretrained}", "--set", "train.steps=2",
                 "--set", f'data.datasets=["{SPEECH}"]',
                 "--set", f"data.cache_dir={tmp_path / 'features_v2'}",
                 "--set", "model.variance_dropout=0.0", "--set", "model.adapter_rank=2"]) == 0
    assert main(args(tmp_path / "run", pretrained, tmp_path / "features_v2", 2,
                     "--set", "meta.start=encoder", "--set", "meta.inner.lock_timing=true",
                     "--set", 'meta.inner.groups=["embedding", "adapters"]',
                     "--set", 'meta.outer_groups=["adapters"]')) == 0
    capsys.readouterr()
    base = load_base("meta", tmp_path / "run")
    start = dict(load_checkpoint(pretrained).model.named_parameters())
    moved = {n for n, p in base.model.named_parameters() if not torch.equal(p, start[n])}
    assert any(n.startswith("speaker_encoder.") for n in moved)
    assert any(".adapter." in n for n in moved)
    assert "speaker.new" not in moved and "speaker.table.weight" not in moved
    settings = default_settings("meta", base)
    assert settings.lock_timing and settings.groups == ("embedding", "adapters")
    clips = load_clips(sorted((SPEECH / "slt").glob("*.wav"))).clips
    result = adapt(clips, base, settings)
    assert result.start == "encoder" and "speaker.timing" in result.voice.params

    # meta.learn_encoder false: the pretrained encoder computes the start and stays as it was,
    # while the adapters' start still learns
    assert main(args(tmp_path / "frozen", pretrained, tmp_path / "features_v2", 2,
                     "--set", "meta.start=encoder", "--set", "meta.learn_encoder=false",
                     "--set", "meta.algo=reptile",
                     "--set", 'meta.inner.groups=["embedding", "adapters"]',
                     "--set", 'meta.outer_groups=["adapters"]')) == 0
    frozen = load_base("meta", tmp_path / "frozen")
    moved = {n for n, p in frozen.model.named_parameters() if not torch.equal(p, start[n])}
    assert not any(n.startswith("speaker_encoder.") for n in moved)
    assert any(".adapter." in n for n in moved)


def test_meta_training_draws_its_tasks_from_the_speakers_pretraining_left_out(tmp_path, features):
    """data.meta_speakers: pretraining leaves a share of its speakers out, and meta-training from
    that checkpoint takes its tasks from them only, voices the model never heard."""
    from metatts.model.config import replace
    from metatts.train.data import feature_cache
    from metatts.train.meta import reserved_speakers, samplers

    run = tmp_path / "pretrained"
    assert main(["--config", str(ROOT / "configs" / "tiny.json"), "--quiet",
                 "--set", f"train.run_dir={run}", "--set", "train.steps=1",
                 "--set", f'data.datasets=["{SPEECH}"]', "--set", f"data.cache_dir={features}",
                 "--set", "data.meta_speakers=0.25"]) == 0
    base = load_base("pretrained", run)
    reserved = reserved_speakers(base.config.data)
    everyone = {p.name for p in SPEECH.iterdir() if p.is_dir()}
    assert len(reserved) == 1 and reserved < everyone
    assert set(base.speakers) == everyone - reserved  # pretraining never heard it
    config = load_config(META_TINY, {"data": {"datasets": [str(SPEECH)], "val_speakers": 0.0,
                                              "cache_dir": str(features)},
                                     "meta": {"k": 1, "q": 1}})
    config = replace(config, model=dataclasses.asdict(base.config.model))
    cache = feature_cache(config.data, tmp_path, pitch=base.config.model.pitch)
    train, _ = samplers(config, cache, base.config.data)
    assert set(train.speakers) == reserved
    assert main(args(tmp_path / "meta", run, features, 1, "--algo", "fomaml",
                     "--set", "data.val_speakers=0.0", "--set", "meta.k=1",
                     "--set", "meta.q=1")) == 0


def _tiny_samplers(tmp_path, features, **meta):
    from metatts.train.data import feature_cache
    from metatts.train.meta import samplers

    config = load_config(META_TINY, {"data": {"datasets": [str(SPEECH)], "val_speakers": 0.25,
                                              "test_speakers": 0.0, "cache_dir": str(features)},
                                     "meta": {"k": 1, "q": 1, **meta}})
    cache = feature_cache(config.data, tmp_path, pitch=config.model.pitch)
    return config, samplers(config, cache)


def test_task_speakers_narrow_the_tasks_by_name_pattern_and_voice_group(tmp_path, features):
    """meta.task_speakers: only matching speakers give tasks; validation is untouched; a pattern
    that matches nobody is refused with the patterns named."""
    from metatts.data import DatasetError, Utterance
    from metatts.train.meta import task_filter

    _, (every, val) = _tiny_samplers(tmp_path, features)
    assert len(every.speakers) == 3 and val is not None
    _, (some, val_too) = _tiny_samplers(tmp_path, features, task_speakers=["kokoro_*", "j?e"])
    assert set(some.speakers) == {s for s in every.speakers if s in ("kokoro_jf_alpha", "joe")}
    assert val_too.speakers == val.speakers
    with pytest.raises(DatasetError, match=r"nobody_\*"):
        _tiny_samplers(tmp_path, features, task_speakers=["nobody_*"])
    keep = task_filter(["group:engine", "kokoro_en_*"])
    clip = dict(id="x", audio=Path("x.wav"), text="a b", duration=1.0)
    assert keep(Utterance(speaker="flite_kal", group="engine", **clip))
    assert keep(Utterance(speaker="kokoro_en_af_bella", group="natural", **clip))
    assert not keep(Utterance(speaker="kokoro_mix_0001", group="natural", **clip))
    assert task_filter([])(Utterance(speaker="anyone", **clip))
    for bad in (["group:"], [""]):
        with pytest.raises(ConfigError, match="task_speakers"):
            load_config(META_TINY, {"meta": {"task_speakers": bad}})


def test_warped_tasks_scale_every_clip_of_a_task_by_one_factor_and_change_the_run(
        tmp_path, pretrained, features):
    """meta.warp_tasks: a warped task is its voice scaled in frequency by one factor in
    [exp(-range), exp(range)], support and query alike (F0 by the factor, the log-mel by
    audio.warp_mel's matrix); a run with every task warped meta-learns from other clips than one
    without (the same validation tasks, never warped, at step 0); bad shares are refused."""
    from metatts.audio import warp_mel
    from metatts.data.batch import Example
    from metatts.meta import Task
    from metatts.model.config import MetaConfig
    from metatts.train.meta import warped_task

    g = torch.Generator().manual_seed(0)

    def clip(i):
        f0 = torch.rand(40, generator=g) * 100 + 100
        f0[::5] = 0  # unvoiced frames stay unvoiced
        return Example(f"c{i}", -1, torch.tensor([3, 4, 5]), torch.randn(80, 40, generator=g) - 5,
                       f0=f0)

    task = Task(support=[clip(0), clip(1)], query=[clip(2)])
    torch.manual_seed(0)
    warped = warped_task(task, 0.15)
    before, after = [*task.support, *task.query], [*warped.support, *warped.query]
    factors = {round(float((b.f0 / a.f0)[a.f0 > 0].mean()), 6) for a, b in zip(before, after)}
    assert len(factors) == 1  # one factor for the whole task
    (factor,) = factors
    assert math.exp(-0.15) <= factor <= math.exp(0.15) and abs(factor - 1) > 1e-4
    for a, b in zip(before, after):
        assert torch.equal(b.f0 == 0, a.f0 == 0) and torch.equal(b.tokens, a.tokens)
        torch.testing.assert_close(b.mel, warp_mel(a.mel, float(
            (b.f0 / a.f0)[a.f0 > 0].mean())), rtol=1e-4, atol=1e-4)

    for name, share in (("plain", "0.0"), ("warped", "1.0")):
        assert main(args(tmp_path / name, pretrained, features, 2,
                         "--set", f"meta.warp_tasks={share}")) == 0
    logs = {name: read_log(tmp_path / name / "log.jsonl") for name in ("plain", "warped")}
    val = {name: [r for r in log if r["split"] == "val"] for name, log in logs.items()}
    assert val["plain"][0] == val["warped"][0]  # validation tasks are never warped
    train = {name: [r["support_first"] for r in log if r["split"] == "train"]
             for name, log in logs.items()}
    assert train["plain"] != train["warped"]
    for bad in ({"warp_tasks": 1.5}, {"warp_tasks": -0.1}, {"warp_range": 0.0}):
        with pytest.raises(ConfigError, match="meta.warp_"):
            MetaConfig(**bad)
