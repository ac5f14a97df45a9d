"""Adversarial training of the mel (train.adversarial): the discriminator, its windows, its
steps and terms, and a real training run that checkpoints and resumes it exactly."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from metatts.cli.train import main
from metatts.model.config import ConfigError, TrainConfig
from metatts.model.discriminator import MelDiscriminator, critic_terms, crop, window_starts
from metatts.train.adversarial import STATE_JSON, TENSORS, Adversary
from metatts.train.logging import read_log

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "tests" / "fixtures" / "speech"


def test_windows_lie_inside_each_items_real_frames_and_crop_takes_those_frames():
    lengths = torch.tensor([40, 10, 16, 100])
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        items, starts = window_starts(lengths, 16, g)
        assert items.tolist() == [0, 2, 3]  # item 1 is shorter than the window
        assert bool((starts >= 0).all()) and bool((starts + 16 <= lengths[items]).all())
    mels = torch.arange(4 * 3 * 100, dtype=torch.float32).reshape(4, 3, 100)
    windows = crop(mels, items, starts, 16)
    assert windows.shape == (3, 3, 16)
    for w, i, s in zip(windows, items, starts):
        assert torch.equal(w, mels[i, :, s: s + 16])


def test_discriminator_scores_patches_and_its_projection_depends_on_the_speaker():
    d = MelDiscriminator(n_mels=80, speaker_dim=16)
    mels = torch.randn(3, 80, 32) - 5
    scores, features = d(mels)
    assert scores.shape[0] == 3 and scores.shape[1] > 1 and len(features) == 4
    torch.nn.init.normal_(d.speaker.weight)
    a, _ = d(mels, torch.randn(3, 16))
    b, _ = d(mels, torch.randn(3, 16))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="mel windows"):
        d(torch.randn(3, 40, 32))


def test_critic_terms_are_the_same_however_the_support_splits_into_parts():
    """The inner loop's critic terms over a support set in one part or in parts of 2 and 1
    items: every window counts alike (the feature matching's scale is the windows' mean mel L1,
    not a mean of the parts' means)."""
    from types import SimpleNamespace as NS

    torch.manual_seed(0)
    critic = MelDiscriminator(n_mels=20, speaker_dim=4)
    width = 16  # every clip exactly one window long: the windows do not depend on the draw
    mels = torch.randn(3, 20, width) - 5
    spoken = mels + torch.tensor([0.1, 0.1, 2.0])[:, None, None] * torch.randn(3, 20, width)
    speaker = torch.randn(3, 4)

    def part(rows):
        return (NS(spoken=spoken[rows], speaker_vector=speaker[rows]),
                NS(mels=mels[rows], mel_lengths=torch.full((len(rows),), width)))

    whole = critic_terms(critic, width, *map(list, zip(part([0, 1, 2]))))
    split = critic_terms(critic, width, *map(list, zip(part([0, 1]), part([2]))))
    for name in ("critic_fm", "critic_adv"):
        assert torch.allclose(whole[name], split[name], rtol=1e-5), name


def smooth(mel: torch.Tensor) -> torch.Tensor:
    """An over-smoothed copy: every bin averaged with its neighbours over 9 bins."""
    return torch.nn.functional.avg_pool1d(mel.transpose(1, 2), 9, 1, 4,
                                          count_include_pad=False).transpose(1, 2)


def test_the_discriminator_learns_to_tell_detail_from_a_smoothed_mel_and_the_terms_wait():
    torch.manual_seed(0)
    cfg = TrainConfig(adversarial=1.0, feature_matching=0.5, adversarial_window=16,
                      adversarial_warmup=5)
    adversary = Adversary(cfg, n_mels=20, speaker_dim=4)
    real = torch.randn(8, 20, 48) - 5  # rough spectra
    lengths = torch.full((8,), 48)
    speaker = torch.randn(8, 4)
    predicted = smooth(real).requires_grad_(True)
    for step in range(1, 61):
        terms = adversary.terms(real, predicted, lengths, speaker, torch.tensor(0.4))
        if step <= 5:  # the warm-up: the discriminator alone
            assert float(terms["gan"].detach()) == 0.0
    assert adversary.steps == 60
    assert float(terms["gan"].detach()) > 0
    d = adversary.discriminator.eval()
    with torch.no_grad():
        real_score = d(real[:, :, :16], speaker)[0].mean()
        fake_score = d(predicted[:, :, :16], speaker)[0].mean()
    assert real_score > fake_score + 0.3
    # the generator's terms reach the prediction, never the discriminator's weights
    for p in d.parameters():
        p.grad = None
    terms = adversary.terms(real, predicted, lengths, speaker, torch.tensor(0.4))
    predicted.grad = None
    for p in d.parameters():
        p.grad = None
    terms["gan"].backward()
    assert predicted.grad is not None and float(predicted.grad.abs().sum()) > 0
    assert all(p.grad is None for p in d.parameters())
    # feature matching is scaled to feature_matching x the mel term's size
    gan, adv, fm = (float(terms[k].detach()) for k in ("gan", "adv", "fm"))
    scale = 0.5 * 0.4 / fm
    assert gan == pytest.approx(adv + scale * fm, rel=1e-5)


def test_config_checks():
    assert not TrainConfig().adversarial_on and TrainConfig(feature_matching=1).adversarial_on
    with pytest.raises(ConfigError, match="adversarial"):
        TrainConfig(adversarial=-1)
    with pytest.raises(ConfigError, match="adversarial_window"):
        TrainConfig(adversarial=1, adversarial_window=4)


def args(run_dir, features, steps, *extra):
    return ["--config", str(ROOT / "configs" / "tiny_v2.json"), "--quiet",
            "--set", f"train.run_dir={run_dir}", "--set", f"train.steps={steps}",
            "--set", f'data.datasets=["{SPEECH}"]', "--set", f"data.cache_dir={features}",
            "--set", "train.checkpoint_every=2", "--set", "train.validate_every=2",
            "--set", "train.log_every=1", "--set", "train.adversarial=1",
            "--set", "train.feature_matching=0.5", "--set", "train.adversarial_window=16",
            "--set", "train.adversarial_warmup=1", *extra]


def test_adversarial_training_logs_checkpoints_and_resumes_exactly(tmp_path):
    features = tmp_path / "features"
    assert main(args(tmp_path / "straight", features, 4)) == 0
    records = [r for r in read_log(tmp_path / "straight" / "log.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all({"disc", "adv", "fm"} <= r.keys() for r in records)
    step4 = tmp_path / "straight/checkpoints/step_00000004"
    assert json.loads((step4 / STATE_JSON).read_text())["steps"] == 4
    assert main(args(tmp_path / "resumed", features, 2)) == 0
    assert main(args(tmp_path / "resumed", features, 4, "--resume")) == 0
    for name in ("model.safetensors", "training.safetensors", TENSORS):
        a = load_file(step4 / name)
        b = load_file(tmp_path / "resumed/checkpoints/step_00000004" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    logs = [[(r["split"], r["step"], r["total"]) for r in read_log(tmp_path / d / "log.jsonl")]
            for d in ("straight", "resumed")]
    assert logs[0] == logs[1]


def test_adaptation_follows_the_critic_of_an_adversarially_trained_checkpoint(tmp_path):
    from metatts.adapt import AdaptSettings, adapt, load_clips
    from metatts.model.checkpoint import load_checkpoint
    assert main(args(tmp_path / "run", tmp_path / "features", 2)) == 0
    base = load_checkpoint(tmp_path / "run")
    assert base.model.critic is not None and "critic" not in "".join(base.model.state_dict())
    clips = load_clips(sorted((SPEECH / "slt").glob("*.wav"))).clips
    terms = ("mel", "pitch", "energy", "critic_fm", "critic_adv")
    settings = AdaptSettings(steps=3, lr=0.01, start="encoder", terms=terms)
    critic = {k: v.clone() for k, v in base.model.critic.state_dict().items()}
    with_critic = adapt(clips, base, settings)
    without = adapt(clips, base, AdaptSettings(steps=3, lr=0.01, start="encoder",
                                              terms=("mel", "pitch", "energy")))
    assert all(torch.isfinite(torch.tensor(with_critic.losses)))
    # the critic's terms count in the loss and move the voice elsewhere; the critic stays fixed
    assert with_critic.losses[0] > without.losses[0]
    moved = [k for k in without.voice.params
             if not torch.allclose(with_critic.voice.params[k], without.voice.params[k])]
    assert moved
    assert all(torch.equal(v, critic[k]) for k, v in base.model.critic.state_dict().items())
    # a checkpoint without a discriminator says so
    plain = ["--config", str(ROOT / "configs" / "tiny_v2.json"), "--quiet",
             "--set", f"train.run_dir={tmp_path / 'plain'}", "--set", "train.steps=1",
             "--set", f'data.datasets=["{SPEECH}"]',
             "--set", f"data.cache_dir={tmp_path / 'features'}"]
    assert main(plain) == 0
    with pytest.raises(ValueError, match="holds no discriminator"):
        adapt(clips, load_checkpoint(tmp_path / "plain"), settings)


def test_a_meta_run_from_an_adversarial_base_keeps_its_critic_and_adaptation_follows_it(
        tmp_path):
    from metatts.adapt import adapt, default_settings, load_base, load_clips, with_changes
    from metatts.model.checkpoint import CRITIC_TENSORS, load_checkpoint
    from metatts.model.discriminator import CRITIC_TERMS
    features = tmp_path / "features"
    assert main(args(tmp_path / "base", features, 2, "--set", "train.adversarial_channels=8")) == 0
    base = load_checkpoint(tmp_path / "base")
    # fine-tuning from the encoder's estimate follows the critic a checkpoint carries ...
    assert set(CRITIC_TERMS) <= set(default_settings("pretrained", base, "encoder").terms)
    # ... and a meta run from such a checkpoint keeps it, with what rebuilds it
    terms = '["mel", "pitch", "energy", "critic_fm", "critic_adv"]'
    meta = ["--config", str(ROOT / "configs" / "meta_tiny.json"), "--quiet",
            "--set", f"train.run_dir={tmp_path / 'meta'}", "--set", "meta.steps=2",
            "--set", f"meta.init={tmp_path / 'base'}", "--set", "meta.start=encoder",
            "--set", f"meta.inner.terms={terms}", "--set", f'data.datasets=["{SPEECH}"]',
            "--set", f"data.cache_dir={features}", "--set", "train.checkpoint_every=2",
            "--set", "train.validate_every=2"]
    assert main(meta) == 0
    learned = load_base("meta", tmp_path / "meta")
    assert learned.config.train.adversarial_channels == 8
    assert (learned.path / CRITIC_TENSORS).is_file()
    ours, theirs = learned.model.critic.state_dict(), base.model.critic.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    settings = default_settings("meta", learned)
    assert set(CRITIC_TERMS) <= set(settings.terms)
    clips = load_clips(sorted((SPEECH / "slt").glob("*.wav"))).clips
    losses = adapt(clips, learned, with_changes(settings, steps=2)).losses
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    # without a critic the meta checkpoint carries none
    plain = ["--config", str(ROOT / "configs" / "tiny_v2.json"), "--quiet",
             "--set", f"train.run_dir={tmp_path / 'plain'}", "--set", "train.steps=1",
             "--set", f'data.datasets=["{SPEECH}"]', "--set", f"data.cache_dir={features}"]
    assert main(plain) == 0
    meta[meta.index(f"train.run_dir={tmp_path / 'meta'}")] = f"train.run_dir={tmp_path / 'm2'}"
    meta[meta.index(f"meta.init={tmp_path / 'base'}")] = f"meta.init={tmp_path / 'plain'}"
    meta[meta.index(f"meta.inner.terms={terms}")] = 'meta.inner.terms=["mel"]'
    assert main(meta) == 0
    assert not (load_base("meta", tmp_path / "m2").path / CRITIC_TENSORS).exists()
