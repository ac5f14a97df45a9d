"""Adaptation v2: a start computed from the clips by the speaker encoder, meta-learned through
the one inner loop, and the intelligibility guards (proximal pull, loss terms, timing lock,
early stopping)."""

import dataclasses
from pathlib import Path

import pytest
import torch

from conftest import SPEECH
from test_adapt import tiny_checkpoint
from metatts.adapt import AdaptSettings, adapt, load_clips, support_examples
from metatts.data import collate
from metatts.meta import (InnerConfig, Task, initial_params, meta_gradient, task_gradient,
                          write_grads)
from metatts.model.config import ConfigError, MetaConfig
from metatts.synthesis import synthesize
from metatts.train.meta import encoder_start

TINY_V2 = Path(__file__).parent.parent / "configs" / "tiny_v2.json"


def v2_checkpoint(directory, seed=0):
    return tiny_checkpoint(directory, seed, TINY_V2)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return v2_checkpoint(tmp_path_factory.mktemp("v2") / "ckpt")


@pytest.fixture(scope="module")
def clips():
    return load_clips(sorted((SPEECH / "slt").glob("*.wav"))).clips


def settings(**changes):
    return dataclasses.replace(AdaptSettings(steps=6, lr=0.05, start="encoder"), **changes)


# -- the start -------------------------------------------------------------------------------

def test_zero_steps_give_the_encoders_voice(base, clips):
    result = adapt(clips, base, settings(steps=0))
    assert result.start == "encoder" and result.voice.settings["start"] == "encoder"
    mels = [x.mel for x in support_examples(clips, base)]
    expected = base.model.encode_speaker(mels)
    assert torch.allclose(result.voice.params["speaker.new"], expected, atol=1e-6)
    other = adapt(clips[:1], base, settings(steps=0)).voice.params["speaker.new"]
    assert not torch.allclose(other, expected)  # the start is a function of the clips


def task_of(base, clips, seed=0):
    examples = support_examples(clips, base)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(examples), generator=g).tolist()
    return Task(support=[examples[i] for i in order[:2]], query=[examples[order[2]]])


@pytest.mark.parametrize("algorithm", ["fomaml", "maml", "reptile"])
def test_encoder_start_gradients_reach_the_encoder(base, clips, algorithm):
    model = base.model.train()
    try:
        cfg = InnerConfig(groups=("embedding", "conditional_norms"), steps=2, lr=0.05,
                          optimizer="sgd")
        task = task_of(base, clips)
        encoder = [n for n, _ in model.named_parameters() if n.startswith("speaker_encoder.")]
        with_encoder = task_gradient(model, task, collate, cfg, algorithm,
                                     start_fn=encoder_start(model))
        assert all(n in with_encoder.grads for n in encoder)
        assert sum(float(with_encoder.grads[n].abs().sum()) for n in encoder) > 0
        baseline = task_gradient(model, task, collate, cfg, algorithm)  # the learned vector
        assert all(float(baseline.grads[n].abs().sum()) == 0 for n in encoder
                   if n in baseline.grads)
        assert float(baseline.grads["speaker.new"].abs().sum()) > 0
    finally:
        model.eval()


def outer_term(model, task, name, weight):
    """FOMAML's task gradient without and with an outer term (``name=weight``: query_identity,
    query_frames, query_verifier) from the encoder's start: the inner steps must be the same and the term must
    change the decoder's meta-gradient. -> (task, inner config, what the query loss gained)."""
    cfg = InnerConfig(groups=("embedding", "conditional_norms"), steps=2, lr=0.05,
                      optimizer="sgd", seed=0)
    runs = {}
    for w in (0.0, weight):
        torch.manual_seed(0)
        runs[w] = task_gradient(model, task, collate, cfg, "fomaml",
                                start_fn=encoder_start(model), **{name: w})
    assert runs[0.0].support_losses == pytest.approx(runs[weight].support_losses)
    names = [n for n in runs[0.0].grads if n.startswith("decoder.")]
    assert any(not torch.allclose(runs[0.0].grads[n], runs[weight].grads[n]) for n in names)
    return task, cfg, runs[weight].query_loss - runs[0.0].query_loss


def test_query_identity_adds_the_identity_term_to_the_outer_objective(base, clips):
    from metatts.meta.inner_loop import IDENTITY, loss_fn

    model = base.model.train()
    try:
        task, cfg, gained = outer_term(model, task_of(base, clips), "query_identity", 50.0)
        assert gained > 0  # 50 x the query clips' identity distance
        # the encoder's vector of the query clips is the target: the term is an identity
        # distance of the adapted voice, read by the model's own (fixed) encoder
        model.eval()
        with torch.no_grad():
            distance = float(loss_fn(model, (IDENTITY,))(
                {"speaker.new": model.speaker.new.detach()}, collate(list(task.query))))
        assert distance > 0
    finally:
        model.eval()


# meta.query_frames: the query clips' loss after frame matching on the support
# (frames.corrected_loss, a mean absolute log-mel difference); meta.query_verifier: their
# verifier term (1 - a cosine); meta.query_support: the support clips' own loss (checked
# against it below)
@pytest.mark.parametrize("name, weight, per_weight", [("query_frames", 2.0, (0.05, 10)),
                                                      ("query_verifier", 3.0, (0.0, 2)),
                                                      ("query_support", 0.5, (0.05, 50))])
def test_an_outer_term_adds_to_the_query_loss_and_reptile_refuses_it(base, clips, name, weight,
                                                                      per_weight):
    """The same inner steps, and the query loss gains the weight times the term, whose
    gradient changes the meta-gradient; Reptile, which has no outer objective, refuses it."""
    model = base.model.train()
    try:
        task, cfg, gained = outer_term(model, task_of(base, clips), name, weight)
        assert per_weight[0] < gained / weight < per_weight[1]
        with pytest.raises(ValueError, match="Reptile has no outer objective"):
            task_gradient(model, task, collate, cfg, "reptile", **{name: 1.0})
        with pytest.raises(ConfigError, match=name):
            MetaConfig(algo="reptile", **{name: 1.0})
        with pytest.raises(ConfigError, match=f"{name} must be >= 0"):
            MetaConfig(**{name: -1.0})
    finally:
        model.eval()


# two SGD steps over the speaker vector and the conditional norms, seeded: a small inner loop
SMALL_INNER = InnerConfig(groups=("embedding", "conditional_norms"), steps=2, lr=0.05,
                          optimizer="sgd", seed=0)


def seeded_run(model, task, algorithm="fomaml", **options):
    """The task gradient of ``task`` from the encoder's start with SMALL_INNER, the global RNG
    seeded first (each call draws the same)."""
    torch.manual_seed(0)
    return task_gradient(model, task, collate, SMALL_INNER, algorithm,
                         start_fn=encoder_start(model), **options)


def test_query_support_adds_the_support_loss_at_the_adapted_parameters(base, clips):
    """What meta.query_support adds is the support clips' loss where the steps ended, the
    query's terms: the same number as the loss of those parameters on the support batch."""
    from metatts.meta.inner_loop import inner_loop, loss_fn

    model = base.model.eval()  # no dropout: the two runs see the same model
    try:
        cfg, task = SMALL_INNER, task_of(base, clips)
        plain, fitted = seeded_run(model, task), seeded_run(model, task, query_support=2.0)
        start = initial_params(model, cfg.groups, detach=True)
        start.update(encoder_start(model)(task))
        adapted = inner_loop(model, start, task.support, collate, cfg)
        with torch.no_grad():
            fit = float(loss_fn(model, fixed=adapted.fixed)(adapted.params,
                                                            collate(list(task.support))))
        assert fitted.query_loss - plain.query_loss == pytest.approx(2.0 * fit, rel=1e-4)
    finally:
        model.eval()


@pytest.mark.parametrize("algorithm", ["fomaml", "maml"])
def test_query_steps_average_the_outer_objective_over_step_counts(base, clips, algorithm):
    """meta.query_steps (MAML++'s multi-step loss): the outer objective is the mean of the query
    loss after each count, its gradient the mean of each count's; the default is the last
    count alone; counts outside the inner loop's and Reptile are refused."""
    model = base.model.eval()  # no dropout: each count's query sees the same model
    try:
        cfg, task = SMALL_INNER, task_of(base, clips)

        def run(**options):
            return seeded_run(model, task, algorithm, **options)

        last, alone = run(), run(query_steps=(2,))
        assert alone.query_loss == pytest.approx(last.query_loss)
        at = {n: run(query_steps=(n,)) for n in (0, 1)}
        assert at[0].query_loss != pytest.approx(last.query_loss)  # the steps moved the voice
        both = run(query_steps=(2, 0))
        assert both.query_loss == pytest.approx((at[0].query_loss + last.query_loss) / 2)
        for name, g in both.grads.items():
            assert torch.allclose(g, (at[0].grads[name] + last.grads[name]) / 2, atol=1e-6)
        assert any(float(g.abs().sum()) > 0 for n, g in both.grads.items()
                   if n.startswith("speaker_encoder."))
        with pytest.raises(ValueError, match="must be step counts in 0..2"):
            run(query_steps=(3,))
        with pytest.raises(ValueError, match="Reptile"):
            task_gradient(model, task, collate, cfg, "reptile", query_steps=(0, 2))
        with pytest.raises(ConfigError, match="query_steps"):
            MetaConfig(algo="reptile", query_steps=(0, 5))
        with pytest.raises(ConfigError, match="query_steps must be inner step counts"):
            MetaConfig(query_steps=(0, 6))
    finally:
        model.eval()


def test_a_tiny_meta_run_improves_the_query_loss_over_its_start(tmp_path, clips):
    base = v2_checkpoint(tmp_path / "ckpt", seed=1)
    model = base.model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    learned = [p for n, p in model.named_parameters()
               if n.startswith("speaker_encoder.") or n in model.parameter_groups()[
                   "conditional_norms"]]
    for p in learned:
        p.requires_grad_(True)
    cfg = InnerConfig(groups=("embedding", "conditional_norms"), steps=2, lr=0.05,
                      optimizer="sgd")
    tasks = [task_of(base, clips, seed) for seed in range(3)]
    start = encoder_start(model)
    optimizer = torch.optim.Adam(learned, lr=3e-3)
    torch.manual_seed(0)
    first = meta_gradient(model, tasks, collate, cfg, "fomaml", start_fn=start)
    for _ in range(15):
        mg = meta_gradient(model, tasks, collate, cfg, "fomaml", start_fn=start)
        optimizer.zero_grad()
        write_grads(dict(model.named_parameters()), mg.grads)
        optimizer.step()
    last = meta_gradient(model, tasks, collate, cfg, "fomaml", start_fn=start)
    before, after = sum(first.query_losses) / 3, sum(last.query_losses) / 3
    assert after < 0.95 * before, (before, after)
    # and the inner steps themselves help: the support loss falls within each task
    assert all(s[-1] < s[0] for s in last.support_losses)


# -- the guards ------------------------------------------------------------------------------

def _distance(a, b):
    return sum(float((a[n] - b[n]).pow(2).sum()) for n in a) ** 0.5


def test_proximal_pull_keeps_the_voice_nearer_its_start(base, clips):
    start = adapt(clips, base, settings(steps=0, groups=("embedding", "conditional_norms")))
    free = adapt(clips, base, settings(groups=("embedding", "conditional_norms")))
    held = adapt(clips, base, settings(groups=("embedding", "conditional_norms"),
                                       proximal=50.0))
    s = start.voice.params
    assert _distance(held.voice.params, s) < 0.7 * _distance(free.voice.params, s)
    assert held.voice.settings["proximal"] == 50.0


def test_loss_terms_choose_what_the_steps_follow(base, clips):
    mel_only = adapt(clips, base, settings(terms=("mel", "postnet")))
    everything = adapt(clips, base, settings())
    assert not torch.allclose(mel_only.voice.params["speaker.new"],
                              everything.voice.params["speaker.new"])
    with pytest.raises(ValueError, match="unknown loss term"):  # refused before any step
        adapt(clips, base, settings(terms=("no_such_term",)))
    with pytest.raises(ValueError, match="none of the loss terms"):  # known, not computed here
        adapt(clips, base, settings(terms=("consistency",)))
    with pytest.warns(UserWarning, match=r"\['consistency'\] are not computed"):  # beside one that is
        beside = adapt(clips, base, settings(terms=("mel", "postnet", "consistency")))
    assert torch.equal(beside.voice.params["speaker.new"], mel_only.voice.params["speaker.new"])


def _identity(base, clips, params):
    from metatts.data.batch import collate
    from metatts.meta.inner_loop import IDENTITY, loss_fn

    base.model.eval()
    with torch.no_grad():
        return float(loss_fn(base.model, (IDENTITY,))(params, collate(
            support_examples(clips, base))))


def pulls_nearer(base, clips, term, weight, read):
    """Adapting with ``term`` at ``weight`` leaves the support clips nearer their voice by
    ``read`` (lower is nearer) than the start and than plain steps; -> the start's reading."""
    groups = ("embedding", "conditional_norms")
    start = adapt(clips, base, settings(steps=0, groups=groups)).voice
    plain = adapt(clips, base, settings(groups=groups)).voice
    pulled = adapt(clips, base, settings(groups=groups, **{term: weight})).voice
    assert pulled.settings[term] == weight
    before = read(base, clips, start.params)
    assert read(base, clips, pulled.params) < min(before, read(base, clips, plain.params))
    return before


def test_identity_term_brings_the_voice_nearer_as_the_model_hears_it(base, clips):
    assert pulls_nearer(base, clips, "identity", 1000.0, _identity) > 0
    # the term's gradient reaches what the adapted voice speaks with, never the encoder
    from metatts.data.batch import collate

    model = base.model
    model.zero_grad()
    out = model.loss(collate(support_examples(clips, base)))
    model.identity_distance([out.output], [out.batch]).backward()
    assert all(p.grad is None or not p.grad.any() for p in model.speaker_encoder.parameters())
    assert model.mel_out.weight.grad.abs().sum() > 0
    model.zero_grad()
    with pytest.raises(ValueError, match="identity must be >= 0"):
        settings(identity=-1.0)
    with pytest.raises(ValueError, match="not both"):
        settings(identity=1.0, terms=("mel", "identity"))
    # by name in terms it is one term among them, of weight 1
    named = adapt(clips, base, settings(groups=("embedding", "conditional_norms"),
                                        terms=("mel", "identity"), steps=1))
    assert named.voice.settings["terms"] == ["mel", "identity"]


def test_identity_term_in_pieces_and_bfloat16(base, clips):
    """The shipped path (long clips in pieces of similar length, run as parts; bfloat16 steps)
    with the term on: finite, and the term still lowers the support clips' distance."""
    groups = ("embedding", "conditional_norms")
    fast = dict(groups=groups, piece_frames=200, precision="bfloat16")
    plain = adapt(clips, base, settings(**fast)).voice
    pulled = adapt(clips, base, settings(identity=1000.0, **fast)).voice
    assert all(torch.isfinite(v).all() for v in pulled.params.values())
    assert _identity(base, clips, pulled.params) < _identity(base, clips, plain.params)


def test_identity_term_needs_a_speaker_encoder(tmp_path, clips):
    v1 = tiny_checkpoint(tmp_path / "v1", 0)
    with pytest.raises(ValueError, match="speaker encoder"):
        adapt(clips, v1, dataclasses.replace(AdaptSettings(steps=1, lr=0.05), identity=1.0))


def test_locked_timing_keeps_the_start_voices_durations(base, clips):
    text = "A new sentence for the adapted voice."
    start = adapt(clips, base, settings(steps=0)).voice
    free = adapt(clips, base, settings(lr=0.3)).voice
    locked = adapt(clips, base, settings(lr=0.3, lock_timing=True)).voice
    assert torch.equal(locked.params["speaker.timing"], start.params["speaker.new"])
    frames = {name: synthesize(base, text, v.params, vocoder=silent).mels[0].shape[-1]
              for name, v in (("start", start), ("free", free), ("locked", locked))}
    assert frames["locked"] == frames["start"] and frames["free"] != frames["start"]


def silent(mel):
    return torch.zeros(mel.shape[-1] * 256)


def test_early_stopping_keeps_the_step_with_the_lowest_held_out_loss(base, clips):
    result = adapt(clips, base, settings(steps=8, lr=0.5, early_stop=True))
    losses = result.held_out_losses
    assert len(losses) == 9 and result.stopped_at == min(range(9), key=losses.__getitem__)
    assert result.voice.settings["stopped_at"] == result.stopped_at
    # the same voice as adapting on the other clips for that many steps
    shorter = adapt(clips[:-1], base, settings(steps=result.stopped_at, lr=0.5))
    for name, value in shorter.voice.params.items():
        assert torch.allclose(result.voice.params[name], value, atol=1e-6), name


def test_early_stopping_keeps_for_each_budget_the_step_it_would_have_stopped_at(base, clips):
    """keep with early_stop (how the benchmark reads several step counts from one run): each kept
    count n holds what an early-stopped adaptation of n steps gives."""
    long = adapt(clips, base, settings(steps=8, lr=0.5, early_stop=True), keep=[0, 3, 8])
    losses = long.held_out_losses
    for n in (0, 3, 8):
        kept = long.kept[n]
        assert kept.stopped_at == min(range(n + 1), key=losses.__getitem__)
        alone = adapt(clips, base, settings(steps=n, lr=0.5, early_stop=True))
        assert alone.stopped_at == kept.stopped_at
        for name, value in alone.voice.params.items():
            assert torch.allclose(kept.params[name], value, atol=1e-6), name
    assert long.kept[8].stopped_at == long.stopped_at


def test_the_default_encoder_fine_tune_leaves_the_duration_predictor_as_it_was(base, clips):
    """ENCODER_FINETUNE (and the shipped meta inner loop) follows mel, pitch and energy but not
    duration: fitting the duration predictor to 5 clips is what made WER rise past 20 steps."""
    from metatts.adapt import default_settings, with_changes

    tuned = default_settings("pretrained", base, start="encoder")
    assert "duration" not in tuned.terms and {"mel", "pitch"} <= set(tuned.terms)
    voice = adapt(clips, base, with_changes(tuned, steps=3, lr=0.05)).voice
    start = dict(base.model.named_parameters())
    duration = [n for n in voice.params if n.startswith("variance.duration.")]
    pitch = [n for n in voice.params if n.startswith("variance.pitch.")]
    assert duration and pitch
    assert all(torch.equal(voice.params[n], start[n]) for n in duration)
    assert any(not torch.equal(voice.params[n], start[n]) for n in pitch)
    everything = adapt(clips, base, with_changes(tuned, steps=3, lr=0.05, terms=())).voice
    assert any(not torch.equal(everything.params[n], start[n]) for n in duration)


def test_adapt_cli_reports_the_terms_and_takes_all(base, tmp_path, capsys):
    import json

    from metatts.cli import adapt as adapt_cli

    wavs = [str(p) for p in sorted((SPEECH / "slt").glob("*.wav"))]
    common = [*wavs, "--init", "pretrained", "--start", "encoder", "--steps", "1",
              "--checkpoint", str(base.path), "--out", str(tmp_path / "v.safetensors")]
    assert adapt_cli.main(common) == 0
    assert json.loads(capsys.readouterr().out)["guards"]["terms"] == [
        "mel", "postnet", "pitch", "energy"]
    assert adapt_cli.main([*common, "--terms", "all", "--force"]) == 0
    assert json.loads(capsys.readouterr().out)["guards"]["terms"] == "all"


@pytest.mark.parametrize("groups", [("decoder",), ("all",)])
def test_adapting_with_the_text_encoder_run_once_gives_the_same_voice(base, clips, groups,
                                                                      monkeypatch):
    """adapt() encodes the text once when the steps cannot change it (metatts.meta.support
    .fixed_text_states): the same losses and voice as running the encoder at every step."""
    import metatts.adapt

    # (no frame bank: its one pass over the clips after the steps runs the text encoder too)
    chosen = settings(groups=groups, piece_frames=60, precision="float32", optimizer="sgd",
                      lr=0.005, steps=8, frames=False)
    calls, mark = [], []
    monkeypatch.setattr(base.model.encoder, "forward",
                        lambda *a, f=base.model.encoder.forward: calls.append(1) or f(*a))
    encode_once = metatts.adapt.fixed_text_states

    def counted(fn):  # the encoder's calls from here on are the steps' (and the final loss')
        return lambda *a, **k: (fn(*a, **k), mark.append(len(calls)))[0]

    monkeypatch.setattr(metatts.adapt, "fixed_text_states", counted(encode_once))
    once = adapt(clips, base, chosen)
    in_steps_once = len(calls) - mark[-1]
    monkeypatch.setattr(metatts.adapt, "fixed_text_states",
                        counted(lambda model, items, *a: list(items)))
    every = adapt(clips, base, chosen)
    in_steps_every = len(calls) - mark[-1]
    # the steps never run the text encoder when they cannot change it; adapting the encoder
    # itself ("all") runs it at every step (and for the final loss) either way
    assert in_steps_every >= chosen.steps + 1
    assert in_steps_once == (0 if groups != ("all",) else in_steps_every)
    assert once.losses == pytest.approx(every.losses, rel=1e-5)
    for name, value in every.voice.params.items():
        torch.testing.assert_close(once.voice.params[name], value, atol=1e-5, rtol=1e-4)


def test_text_states_of_other_tokens_are_refused(base, clips):
    from metatts.meta.support import fixed_text_states

    items = fixed_text_states(base.model, support_examples(clips, base), ["speaker.new"])
    wrong = dataclasses.replace(items[0], text_states=items[0].text_states[:-1])
    with pytest.raises(ValueError, match="do not belong to"):
        base.model.loss(collate([wrong]))


# -- the verifier term -----------------------------------------------------------------------

def _heard(base, clips, params):
    """The verifier term of the support clips spoken with ``params``: 1 - their cosine to the
    clips' voice by the shipped verifier, whole clips (no window: the same figure every call)."""
    from metatts import verifier
    from metatts.data.batch import collate
    from metatts.meta.inner_loop import spoken_mels

    batch = collate(support_examples(clips, base))
    base.model.eval()
    model = verifier.load()
    with torch.no_grad():
        spoken = spoken_mels(base.model, params, batch)
        target = verifier.centroid(model, [batch.mels], [batch.mel_lengths])
        return float(verifier.distance(model, [spoken], target, [batch.mel_lengths], crop=0))


def test_verifier_term_brings_the_voice_nearer_as_the_verifier_hears_it(base, clips):
    assert 0 < pulls_nearer(base, clips, "verifier", 5.0, _heard) < 2
    with pytest.raises(ValueError, match="verifier must be >= 0"):
        settings(verifier=-1.0)


def test_verifier_term_reaches_the_mels_and_never_the_verifier(base, clips):
    from metatts import verifier
    from metatts.data.batch import collate

    model = verifier.load()
    assert not any(p.requires_grad for p in model.parameters())
    tiny = torch.finfo(torch.float32).tiny  # subnormal weights zeroed at load (slow on x86)
    assert not any(bool(((p != 0) & (p.abs() < tiny)).any()) for p in model.parameters())
    batch = collate(support_examples(clips, base))
    target = verifier.centroid(model, [batch.mels], [batch.mel_lengths])
    spoken = batch.mels.clone().requires_grad_(True)
    torch.manual_seed(0)
    term = verifier.distance(model, [spoken], target, [batch.mel_lengths])
    term.backward()
    assert spoken.grad.abs().sum() > 0
    # padding past each clip's length gets no gradient, and windows stay inside the clip
    for i, n in enumerate(batch.mel_lengths.tolist()):
        assert not spoken.grad[i, :, n:].any()
    # the real clips' own voice is nearer than another clip's
    assert float(verifier.distance(model, [batch.mels], target, [batch.mel_lengths], crop=0)) < 0.5


def test_verifier_weights_are_checked_before_loading(tmp_path):
    import json
    import shutil

    from metatts import assets, verifier

    shutil.copy(verifier.DEFAULT_DIR / "verifier.safetensors", tmp_path / "verifier.safetensors")
    about = json.loads((verifier.DEFAULT_DIR / "verifier.json").read_text())
    assert about["sha256"] == assets.sha256_file(verifier.DEFAULT_DIR / "verifier.safetensors")
    (tmp_path / "verifier.json").write_text(json.dumps({**about, "sha256": "0" * 64}))
    with pytest.raises(assets.AssetError, match="speaker verifier"):
        verifier.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="benchmarks/verifier.py train"):
        verifier.load(tmp_path / "none")


def test_verifier_every_nth_step_and_the_loss_it_reports(base, clips):
    """``verifier_every`` n: the term on steps 1, n+1, 2n+1...; the losses the steps report are
    the loss without it (the same loss a plain run reports at the first step)."""
    groups = ("embedding", "conditional_norms")
    plain = adapt(clips, base, settings(groups=groups), keep=[1, 2])
    every = adapt(clips, base, settings(groups=groups, verifier=5.0), keep=[1, 2])
    third = adapt(clips, base, settings(groups=groups, verifier=5.0, verifier_every=3),
                  keep=[1, 2])
    assert every.losses[0] == pytest.approx(plain.losses[0], rel=1e-5)
    assert third.losses[0] == pytest.approx(plain.losses[0], rel=1e-5)
    assert third.voice.settings["verifier_every"] == 3

    def same(a, b, n):
        return all(torch.allclose(a.kept[n].params[k], b.kept[n].params[k])
                   for k in a.kept[n].params)

    # the first step follows the term in both, the second only where it comes every step
    # (Adam's first step is the gradient's sign, so the term shows from the second on)
    assert same(third, every, 1)
    assert not same(third, plain, 2) and not same(third, every, 2)
    with pytest.raises(ValueError, match="verifier_every must be a whole number"):
        settings(verifier=1.0, verifier_every=0)


@pytest.mark.parametrize("native", [True, False])
def test_fused_adam_steps_as_the_written_out_one_on_either_convolution(base, clips, native,
                                                                       monkeypatch):
    """Adaptation's fused Adam (metatts.meta.inner_optim.FusedAdam) takes the written-out
    update's steps with the library's convolution and with the product over shifted copies
    (CPUs without AVX-512), whose weight gradient torch.func lays out transposed."""
    import sys

    from metatts.model import layers

    inner = sys.modules["metatts.meta.inner_loop"]
    monkeypatch.setattr(layers, "_NATIVE_CONV", native)
    run = settings(groups=("decoder",), lr=0.01, precision="float32", frames=False)
    fused = adapt(clips, base, run)
    monkeypatch.setattr(inner, "fusable", lambda *args, **kwargs: False)
    written = adapt(clips, base, run)
    assert fused.losses == pytest.approx(written.losses, rel=1e-3)
    # Adam's step is lr * m / sqrt(v): where a gradient is near zero, rounding moves it by a
    # share of lr; a gradient read in the wrong order moves it by up to 2 lr a step
    for name, value in written.voice.params.items():
        torch.testing.assert_close(fused.voice.params[name], value, rtol=0, atol=0.1 * run.lr)


def test_every_batch_normalizes_pitch_by_the_clips_the_steps_fit(base, clips, monkeypatch):
    """Early stopping's held-out clip and stochastic steps are batches of some of the voice's
    clips: each normalizes F0 by the statistics of the clips the steps fit, not by its own."""
    import sys

    from metatts.data.pitch import voice_stats

    module = sys.modules["metatts.adapt"]
    seen, real = [], module.split_collate

    def spy(items, waste=0.1, pitch_stats=None):
        seen.append((len(items), pitch_stats))
        return real(items, waste, pitch_stats)

    monkeypatch.setattr(module, "split_collate", spy)
    adapt(clips, base, settings(steps=3, early_stop=True, batching="stochastic"))
    fitted = voice_stats(torch.cat([x.f0 for x in support_examples(clips[:-1], base)]))
    assert fitted is not None and {n for n, _ in seen} >= {1}
    assert all(torch.allclose(stats, fitted) for _, stats in seen)
