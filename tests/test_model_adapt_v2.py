"""The model's adaptation capacity (decoder adapters) and the timing lock (speaker.timing)."""

import dataclasses
from pathlib import Path

import pytest
import torch
from torch.func import functional_call, grad

from metatts.data import Example
from metatts.model.checkpoint import load_checkpoint
from metatts.model.config import ConfigError, ModelConfig
from metatts.model.fastspeech2 import NEW_SPEAKER, FastSpeech2, count_parameters
from metatts.text import SYMBOLS
from metatts.train.data import collate_train

TINY = ModelConfig(n_symbols=len(SYMBOLS), n_speakers=3, hidden=32, heads=2, encoder_layers=1,
                   decoder_layers=2, ffn_hidden=64, speaker_dim=16, variance_hidden=32,
                   postnet_layers=0, aligner_channels=16, dropout=0.0, variance_dropout=0.0,
                   pitch=True)


def model_with(seed=0, **changes):
    torch.manual_seed(seed)
    return FastSpeech2(dataclasses.replace(TINY, **changes))


def new_voice_batch(seed=0):
    """Three clips of a voice being adapted (NEW_SPEAKER), with F0."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i, (n, t) in enumerate([(5, 30), (7, 40), (6, 35)]):
        mel = torch.randn(80, t, generator=g) * 0.5 - 4
        f0 = torch.where(torch.rand(t, generator=g) < 0.7, 180.0 + 10 * torch.rand(t), 0.0)
        tokens = torch.randint(1, TINY.n_symbols, (n,), generator=g)
        items.append((Example(f"u{i}", NEW_SPEAKER, tokens, mel), f0, None))
    return collate_train(items)


def loss_of(model, batch, values, term="mel"):
    return functional_call(model, values, (batch,)).parts[term]


def test_adapters_start_as_identity_and_form_their_own_group():
    plain, adapted = model_with(), model_with(adapter_rank=4)
    names = adapted.adapter_names()
    assert len(names) == 2 * TINY.decoder_layers and all(n.startswith("decoder.") for n in names)
    assert plain.adapter_names() == []
    # same outputs as the model without adapters, at initialization (up projections are zero)
    state = {k: v for k, v in adapted.state_dict().items() if ".adapter." not in k}
    plain.load_state_dict(state)
    plain.eval(), adapted.eval()
    tokens, lengths = torch.randint(1, TINY.n_symbols, (2, 7)), torch.tensor([7, 5])
    with torch.inference_mode():
        a = adapted.infer(tokens, lengths, torch.tensor([0, 1]))
        b = plain.infer(tokens, lengths, torch.tensor([0, 1]))
    assert torch.equal(a.mel, b.mel)
    groups = adapted.parameter_groups()
    assert set(groups["conditional_norms"]) < set(groups["adapters"]) < set(groups["decoder"])
    assert set(groups["adapters"]) - set(groups["conditional_norms"]) == set(names)
    per_voice = count_parameters(adapted, names)
    assert per_voice == TINY.decoder_layers * 2 * TINY.hidden * 4
    with pytest.raises(ConfigError, match="adapter_rank"):
        ModelConfig(adapter_rank=-1)


def test_adapters_alone_fit_a_voice():
    model = model_with(adapter_rank=4).train()
    batch = new_voice_batch()
    names = model.adapter_names()
    values = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()
              if n in names}
    optimizer = torch.optim.Adam(values.values(), lr=1e-2)
    start = float(loss_of(model, batch, values).detach())
    for _ in range(40):
        optimizer.zero_grad()
        loss_of(model, batch, values).backward()
        optimizer.step()
    assert float(loss_of(model, batch, values).detach()) < 0.9 * start
    assert all(values[n].abs().max() > 0 for n in names if n.endswith("up.weight"))


def test_pretraining_leaves_the_adapters_at_zero(tmp_path):
    from metatts.cli.train import main

    root = Path(__file__).resolve().parents[1]
    assert main(["--config", str(root / "configs" / "tiny_v2.json"), "--quiet",
                 "--set", f"train.run_dir={tmp_path / 'run'}", "--set", "train.steps=2",
                 "--set", f'data.datasets=["{root / "tests" / "fixtures" / "speech"}"]',
                 "--set", f"data.cache_dir={tmp_path / 'features'}",
                 "--set", "model.adapter_rank=2"]) == 0
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint.config.model.adapter_rank == 2
    ups = {n: p for n, p in checkpoint.model.named_parameters()
           if ".adapter." in n and n.endswith("up.weight")}
    assert ups and all(torch.equal(p, torch.zeros_like(p)) for p in ups.values())


def test_timing_vector_drives_the_predictors_and_not_the_decoder():
    model = model_with().eval()
    tokens, lengths = torch.randint(1, TINY.n_symbols, (1, 8)), torch.tensor([8])
    new = torch.tensor([NEW_SPEAKER])
    voice = torch.randn(TINY.speaker_dim)
    other = torch.randn(TINY.speaker_dim)
    assert torch.isnan(model.speaker.timing).all()  # unset: the voice's own vector everywhere
    assert "speaker.timing" not in model.state_dict()  # never saved with the model

    def infer(values):
        class Infer(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self):
                return self.model.infer(tokens, lengths, new)
        return functional_call(Infer(), {f"model.{k}": v for k, v in values.items()}, ())

    with torch.inference_mode():
        free = infer({"speaker.new": voice})
        same = infer({"speaker.new": voice, "speaker.timing": voice})
        locked = infer({"speaker.new": voice, "speaker.timing": other})
        other_voice = infer({"speaker.new": other})
        known = model.infer(tokens, lengths, torch.tensor([0]))
    assert torch.equal(free.mel, same.mel)
    # durations follow the timing vector: those of the other voice
    assert torch.equal(locked.durations, other_voice.durations)
    # the decoder still speaks with the voice's vector: not the other voice's mel
    assert locked.mel.shape == other_voice.mel.shape
    assert not torch.allclose(locked.mel, other_voice.mel)
    # table speakers never read it
    model.speaker.timing.copy_(other)
    with torch.inference_mode():
        assert torch.equal(model.infer(tokens, lengths, torch.tensor([0])).mel, known.mel)
    model.speaker.timing.fill_(float("nan"))


def test_with_timing_locked_the_voice_vector_gets_no_gradient_from_the_predictors():
    model = model_with().train()
    batch = new_voice_batch()
    voice = torch.randn(TINY.speaker_dim)
    params = dict(model.named_parameters())

    def part_grad(term, timing):
        values = {**params, "speaker.new": voice}
        if timing is not None:
            values["speaker.timing"] = timing

        def f(v):
            return functional_call(model, {**values, "speaker.new": v}, (batch,)).parts[term]
        return grad(f)(voice)

    for term in ("duration", "pitch", "energy"):
        assert part_grad(term, None).abs().sum() > 0
        assert part_grad(term, voice.clone()).abs().sum() == 0
    assert part_grad("mel", voice.clone()).abs().sum() > 0


@pytest.mark.parametrize("fixed_durations", [True, False])
def test_a_support_set_split_by_length_has_the_whole_batch_loss_and_gradients(fixed_durations):
    """adapt runs clips of different lengths as Parts (no padding to the longest); the pooled
    loss, every term of it, and the gradients of what adapts equal one padded batch's, pitch
    normalization of the new voice included (from all its clips, not each part's)."""
    from metatts.data.batch import Parts, collate, length_groups, split_collate
    from metatts.meta import InnerConfig, initial_params, inner_loop, loss_fn
    from metatts.meta.support import fixed_alignment
    from metatts.model.losses import pool

    assert length_groups([30, 95, 40, 100, 33], waste=0.1) == [[3, 1], [2, 4], [0]]
    assert length_groups([30, 95, 40, 100, 33], waste=0.0) == [[3], [1], [2], [4], [0]]
    assert length_groups([30, 95, 40, 100, 33], waste=5.0) == [[3, 1, 2, 4, 0]]
    model = model_with(adapter_rank=4).eval()
    g = torch.Generator().manual_seed(3)
    items = []
    for i, (n, t) in enumerate([(5, 30), (12, 95), (7, 40), (14, 100), (6, 33)]):
        mel = torch.randn(80, t, generator=g) * 0.5 - 4
        f0 = torch.where(torch.rand(t, generator=g) < 0.7, 120.0 + 80 * torch.rand(t, generator=g),
                         torch.zeros(t))
        tokens = torch.randint(1, TINY.n_symbols, (n,), generator=g)
        items.append(Example(f"u{i}", NEW_SPEAKER, tokens, mel, f0=f0))
    names = model.parameter_groups()["adapters"]
    if fixed_durations:
        items = fixed_alignment(model, items, names)
    whole, parts = collate(items), split_collate(items)
    assert isinstance(parts, Parts) and [len(p) for p in parts] == [2, 2, 1] and parts.items == 5
    assert isinstance(split_collate(items[:1]), type(whole))  # one length group: one batch
    # statistics given (the whole voice's where the items are some of its clips): carried by
    # every part, and by one batch too
    voice = torch.tensor([5.0, 0.2])
    assert all(torch.equal(p.pitch_stats, voice) for p in split_collate(items, 0.1, voice))
    assert torch.equal(split_collate(items[:1], 0.1, voice).pitch_stats, voice)
    assert split_collate(items[:1]).pitch_stats is None
    params = initial_params(model, ("adapters",), detach=True)
    params["speaker.new"] = torch.randn(TINY.speaker_dim, generator=g) * 0.3
    params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    from torch.func import functional_call as call

    one = call(model, params, (whole,))
    pooled = pool([call(model, params, (p,)) for p in parts], model.loss_config)
    assert set(pooled.parts) == set(one.parts) and "pitch" in one.parts
    for term in one.parts:
        torch.testing.assert_close(pooled.parts[term], one.parts[term], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pooled.total, one.total, rtol=1e-5, atol=1e-6)
    a = torch.autograd.grad(one.total, list(params.values()))
    b = torch.autograd.grad(loss_fn(model)(params, parts), list(params.values()))
    for x, y in zip(a, b):
        torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-6)
    # the same adaptation either way
    cfg = InnerConfig(groups=("adapters",), steps=3, lr=1e-2, optimizer="adam")
    start = {k: v.detach() for k, v in params.items()}
    padded = inner_loop(model, start, items, collate, cfg)
    split = inner_loop(model, start, items, split_collate, cfg)
    torch.testing.assert_close(split.losses, padded.losses, rtol=1e-5, atol=1e-6)
    for name in start:
        torch.testing.assert_close(split.params[name], padded.params[name], rtol=1e-4, atol=1e-6)
