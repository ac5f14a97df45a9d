import dataclasses
import itertools
import math

import pytest
import torch
from torch.func import functional_call, grad

from metatts.data import Example, collate
from metatts.model.aligner import (beta_binomial_prior, durations_to_alignment,
                                   forward_sum_loss, monotonic_alignment_search)
from metatts.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from metatts.model.config import (Config, ConfigError, ModelConfig, TrainConfig, from_dict,
                                  load_config, replace)
from metatts.model.fastspeech2 import NEW_SPEAKER, FastSpeech2, count_parameters
from metatts.model.layers import higher_order
from metatts.text import SYMBOLS

TINY = ModelConfig(n_symbols=len(SYMBOLS), n_speakers=3, hidden=32, heads=2, encoder_layers=1,
                   decoder_layers=1, ffn_hidden=64, speaker_dim=16, variance_hidden=32,
                   postnet_layers=2, postnet_channels=32, aligner_channels=16, dropout=0.0,
                   variance_dropout=0.0)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return FastSpeech2(TINY)


def batch(sizes=((5, 30), (9, 45), (7, 38)), speakers=(0, 1, 2), seed=0):
    g = torch.Generator().manual_seed(seed)
    return collate([Example(f"u{i}", s, torch.randint(1, TINY.n_symbols, (n,), generator=g),
                            torch.randn(80, t, generator=g) - 5)
                    for i, ((n, t), s) in enumerate(zip(sizes, speakers))])


def all_paths(T, N):
    """Every monotonic alignment of T frames to N tokens as a token index per frame."""
    for cuts in itertools.combinations(range(1, T), N - 1):
        bounds = (0, *cuts, T)
        yield [k for k in range(N) for _ in range(bounds[k + 1] - bounds[k])]


def test_parameter_counts_and_nested_groups():
    model = tiny_model()
    groups = model.parameter_groups()
    assert list(groups) == ["embedding", "conditional_norms", "adapters", "decoder", "all"]
    for small, big in zip(groups.values(), list(groups.values())[1:]):
        assert set(small) <= set(big)
    assert groups["adapters"] == groups["conditional_norms"]  # no adapters in this config
    for small, big in [("embedding", "conditional_norms"), ("adapters", "decoder"),
                       ("decoder", "all")]:
        assert set(groups[small]) < set(groups[big])
    assert groups["embedding"] == ["speaker.new"]
    assert 50_000 < count_parameters(model) < 200_000
    base = FastSpeech2(ModelConfig(n_symbols=len(SYMBOLS), n_speakers=100))
    assert 10e6 < count_parameters(base) < 20e6


def test_shapes_and_padding_do_not_leak():
    model = tiny_model().eval()
    b = batch()
    out = model.outputs(b)
    B, T = b.mels.shape[0], b.mels.shape[2]
    assert out.mel.shape == out.mel_postnet.shape == (B, 80, T)
    assert out.log_duration.shape == b.tokens.shape
    assert torch.equal(out.alignment.durations.sum(1), b.mel_lengths)
    # an utterance gives the same outputs alone as padded in a batch
    alone = model.outputs(batch(sizes=((5, 30),), speakers=(0,)))
    n, t = 5, 30
    assert torch.allclose(alone.mel_postnet[0], out.mel_postnet[0, :, :t], atol=1e-4)
    assert torch.allclose(alone.log_duration[0], out.log_duration[0, :n], atol=1e-5)
    assert torch.equal(alone.alignment.hard[0], out.alignment.hard[0, :t, :n])


def test_inference_shapes_pace_and_silence_padding():
    model = tiny_model().eval()
    b = batch()
    with torch.inference_mode():
        pred = model.infer(b.tokens, b.token_lengths, b.speakers)
        fast = model.infer(b.tokens, b.token_lengths, b.speakers, pace=2.0)
    assert pred.mel.shape == (3, 80, int(pred.mel_lengths.max()))
    assert torch.equal(pred.durations.sum(1), pred.mel_lengths)
    assert (pred.durations[b.token_mask] >= 1).all() and (pred.durations[~b.token_mask] == 0).all()
    assert fast.mel_lengths.sum() <= pred.mel_lengths.sum()
    short = int(pred.mel_lengths.argmin())
    assert (pred.mel[short, :, int(pred.mel_lengths[short]):] == math.log(1e-5)).all()


def test_mas_is_monotonic_sums_to_length_and_is_optimal():
    torch.manual_seed(0)
    log_soft = torch.randn(2, 7, 4).log_softmax(-1)
    path = monotonic_alignment_search(log_soft, torch.tensor([4, 3]), torch.tensor([7, 6]))
    for b, (n, t) in enumerate([(4, 7), (3, 6)]):
        tokens = path[b, :t, :n].argmax(-1)
        assert torch.equal(path[b].sum(), torch.tensor(float(t)))
        assert (path[b, :t].sum(-1) == 1).all() and path[b, t:].sum() == 0
        assert tokens[0] == 0 and tokens[-1] == n - 1
        assert ((tokens[1:] - tokens[:-1]) >= 0).all() and ((tokens[1:] - tokens[:-1]) <= 1).all()
        best = max(sum(float(log_soft[b, i, k]) for i, k in enumerate(p)) for p in all_paths(t, n))
        assert float((path[b, :t, :n] * log_soft[b, :t, :n]).sum()) == pytest.approx(best, abs=1e-5)


def test_mas_matches_speechbrain():
    from metatts._torchaudio import import_speechbrain

    import_speechbrain()
    from speechbrain.lobes.models.FastSpeech2 import maximum_path_numpy

    torch.manual_seed(1)
    attn = torch.rand(3, 40, 9).softmax(-1)
    lengths, frames = torch.tensor([9, 6, 4]), torch.tensor([40, 31, 12])
    ours = monotonic_alignment_search(attn.log(), lengths, frames)
    mask = (torch.arange(9)[None, :, None] < lengths[:, None, None]) & (
        torch.arange(40)[None, None, :] < frames[:, None, None])
    theirs = maximum_path_numpy(attn.log().transpose(1, 2) * mask, mask.float())  # (B, N, T)
    assert torch.equal(ours, theirs.transpose(1, 2))


def test_forward_sum_equals_torch_ctc_with_a_blank():
    torch.manual_seed(0)
    logits = torch.randn(3, 20, 6)
    tokens, frames = torch.tensor([6, 4, 2]), torch.tensor([20, 13, 9])
    ours = forward_sum_loss(logits, tokens, frames, higher_order=True)
    padded = torch.where(torch.arange(6) < tokens[:, None, None], logits, -1e9)
    log_probs = torch.cat([torch.full((3, 20, 1), -1.0), padded], -1).log_softmax(-1)
    targets = torch.arange(1, 7).expand(3, 6)
    theirs = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), targets, frames, tokens)
    assert float(ours) == pytest.approx(float(theirs), abs=1e-5)


def test_forward_sum_kernel_and_loop_agree_in_value_and_gradient():
    """The fast path (PyTorch's CTC kernel, used in pretraining) and the twice-differentiable loop
    (used inside torch.func transforms) are the same function."""
    torch.manual_seed(0)
    logits = torch.randn(3, 25, 7, dtype=torch.float64, requires_grad=True)
    tokens, frames = torch.tensor([7, 5, 2]), torch.tensor([25, 14, 6])
    fast = forward_sum_loss(logits, tokens, frames)  # plain tensor: the kernel
    (g_fast,) = torch.autograd.grad(fast, logits)
    loop = forward_sum_loss(logits, tokens, frames, higher_order=True)
    (g_loop,) = torch.autograd.grad(loop, logits)
    assert float(fast.detach()) == pytest.approx(float(loop.detach()), abs=1e-9)
    assert torch.allclose(g_fast, g_loop, atol=1e-9)
    # under torch.func.grad the loop is chosen, so a gradient of a gradient exists
    hess_diag = torch.func.grad(lambda x: torch.func.grad(
        lambda y: forward_sum_loss(y, tokens, frames))(x).sum())(logits.detach())
    assert torch.isfinite(hess_diag).all() and hess_diag.abs().sum() > 0


def test_prior_rows_are_distributions_over_real_tokens():
    prior = beta_binomial_prior(torch.tensor([5, 3]), torch.tensor([20, 11]), 5, 20)
    assert torch.allclose(prior[0].sum(-1), torch.ones(20), atol=1e-4)
    assert torch.allclose(prior[1, :11].sum(-1), torch.ones(11), atol=1e-4)
    assert prior[1, 11:].sum() == 0 and prior[1, :, 3:].sum() == 0
    assert prior[0, 0].argmax() == 0 and prior[0, -1].argmax() == 4


def test_length_regulation_matrix():
    path = durations_to_alignment(torch.tensor([[2, 1, 3], [1, 1, 0]]))
    assert path.shape == (2, 6, 3)
    assert path[0].argmax(-1).tolist() == [0, 0, 1, 2, 2, 2]
    assert path[1].sum(-1).tolist() == [1, 1, 0, 0, 0, 0]


def test_second_order_gradient_through_functional_loss():
    model = tiny_model()
    b = batch(sizes=((3, 12), (5, 16)), speakers=(NEW_SPEAKER,) * 2)
    names = model.parameter_groups()["all"]
    params = {n: p for n, p in model.named_parameters() if n in names}

    def loss(p):
        return functional_call(model, p, (b,)).total

    with higher_order():  # the inner gradient stays differentiable (as MAML's inner loop does)
        g = grad(loss)(params)
    fast = {k: params[k] - 0.01 * g[k] for k in params}
    loss(fast).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(x is not None and torch.isfinite(x).all() for x in grads)
    assert model.speaker.new.grad.abs().sum() > 0  # the new-voice vector is what index -1 uses


def test_new_speaker_vector_replaces_the_table_row():
    model = tiny_model().eval()
    b = batch()
    new = batch(speakers=(NEW_SPEAKER,) * 3)
    with torch.no_grad():
        as_row = model.loss(b).total
        as_new = functional_call(model, {"speaker.new": model.speaker.table.weight[b.speakers[0]]},
                                 (new,)).total
    assert not torch.equal(model(new).total, as_row)
    b1 = batch(speakers=(0, 0, 0))
    with torch.no_grad():
        assert torch.allclose(model.loss(b1).total, as_new, atol=1e-6)


def test_tiny_model_overfits_a_few_utterances():
    model = tiny_model()
    b = batch(sizes=((6, 40), (8, 48)), speakers=(0, 1))
    # a mel with structure to learn: each token's frames carry that token's pattern
    b = type(b)(**{**b.__dict__, "mels": b.mels * 0.1 + torch.linspace(-8, 0, 80)[None, :, None]})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        out = model.loss(b)
        first = first or out.items()
        opt.zero_grad()
        out.total.backward()
        opt.step()
    last = model.loss(b).items()
    assert last["total"] < first["total"] / 2
    assert last["mel"] < first["mel"] / 2


def test_checkpoint_round_trip_is_exact(tmp_path):
    model = tiny_model()
    config = replace(Config(), model=TINY.__dict__)
    speakers = ("a", "b", "c")
    save_checkpoint(tmp_path / "ck", model, config, SYMBOLS, speakers, step=7)
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.step == 7 and loaded.speakers == speakers and loaded.config == config
    b = batch()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.loss(b).total, loaded.model.loss(b).total)
        a = model.infer(b.tokens, b.token_lengths, b.speakers).mel
        assert torch.equal(a, loaded.model.infer(b.tokens, b.token_lengths, b.speakers).mel)
    assert not list(tmp_path.glob("**/*.pt")) and not list(tmp_path.glob("**/*.pkl"))


def test_checkpoint_with_unknown_config_key_is_refused(tmp_path):
    import json

    save_checkpoint(tmp_path / "ck", tiny_model(), replace(Config(), model=TINY.__dict__),
                    SYMBOLS, ("a", "b", "c"))
    meta = json.loads((tmp_path / "ck" / "model.json").read_text())
    meta["config"]["model"]["hiden"] = 3
    (tmp_path / "ck" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="hiden"):
        load_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing")


def test_config_overrides_are_typed_and_strict(tmp_path):
    assert from_dict(Config, {"model": {"hidden": 64}}).model.hidden == 64
    assert from_dict(Config, {"train": {"lr": 1}}).train.lr == 1.0
    assert from_dict(Config, {"train": {"betas": [0.8, 0.9]}}).train.betas == (0.8, 0.9)
    with pytest.raises(ConfigError, match="model.hiden"):
        from_dict(Config, {"model": {"hiden": 64}})
    with pytest.raises(ConfigError, match="train.steps: expected int"):
        from_dict(Config, {"train": {"steps": "10"}})
    with pytest.raises(ConfigError, match="divisible"):
        from_dict(Config, {"model": {"hidden": 30, "heads": 4}})
    for name in ("tiny", "base"):
        assert isinstance(load_config(f"configs/{name}.json"), Config)


@dataclasses.dataclass(frozen=True)
class WithOptionalSection:  # how a later section (e.g. meta-learning) can be optional
    train: TrainConfig | None = None


def test_optional_config_sections():
    assert from_dict(WithOptionalSection, {}).train is None
    assert from_dict(WithOptionalSection, {"train": None}).train is None
    assert from_dict(WithOptionalSection, {"train": {"steps": 5}}).train.steps == 5
    with pytest.raises(ConfigError, match="train.stepz"):
        from_dict(WithOptionalSection, {"train": {"stepz": 5}})


def test_speaker_split_fractions_are_checked():
    from metatts.model.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="fraction of the speakers"):
        load_config("configs/tiny.json", {"data": {"val_speakers": 1}})


def test_fixed_durations_skip_the_aligner_exactly():
    """A batch carrying durations from model.align() gives the same mel, duration and energy
    losses, and the same gradient for every parameter downstream of the alignment, as the
    aligner's own pass; the align and binarization terms are left out."""
    model = tiny_model().eval()
    b = batch(speakers=(0, NEW_SPEAKER, 1))
    fixed = dataclasses.replace(b, durations=model.align(b))
    full, skipped = model.loss(b), model.loss(fixed)
    assert set(full.parts) - set(skipped.parts) == {"align", "binarization"}
    for name, value in skipped.parts.items():
        torch.testing.assert_close(value, full.parts[name])
    names = model.parameter_groups()["decoder"]
    params = {n: p.detach() for n, p in model.named_parameters() if n in names}

    def mel_loss(p, data):
        return functional_call(model, p, (data,)).parts["mel"]

    g_full, g_fixed = grad(mel_loss)(params, b), grad(mel_loss)(params, fixed)
    for name in names:
        torch.testing.assert_close(g_fixed[name], g_full[name])


def _support_items() -> list[Example]:
    """Three support clips of a new voice for the tiny model: random tokens and mels."""
    g = torch.Generator().manual_seed(1)
    return [Example(f"c{i}", NEW_SPEAKER, torch.randint(1, TINY.n_symbols, (n,), generator=g),
                    torch.randn(80, t, generator=g) - 5)
            for i, (n, t) in enumerate([(6, 30), (8, 41), (5, 33)])]


@pytest.mark.parametrize("groups", [("embedding",), ("decoder",), ("all",)])
def test_inner_loop_on_pre_aligned_support_gives_the_same_voice(groups):
    """fixed_alignment attaches durations unless the aligner itself adapts; the inner loop then
    takes the same steps as with the aligner running at every step."""
    from metatts.meta import InnerConfig, initial_params, inner_loop
    from metatts.meta.support import fixed_alignment

    model, items = tiny_model().eval(), _support_items()
    start = initial_params(model, groups, detach=True)
    aligned = fixed_alignment(model, items, list(start))
    assert all((x.durations is None) == (groups == ("all",)) for x in aligned)
    cfg = InnerConfig(groups=groups, steps=3, lr=0.05, optimizer="adam", batching="minibatch",
                      batch_size=2)
    plain = inner_loop(model, start, items, collate, cfg).params
    fast = inner_loop(model, start, aligned, collate, cfg).params
    for name in start:
        torch.testing.assert_close(fast[name], plain[name])


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_time_major_convolution_equals_conv1d(kernel, native, monkeypatch):
    from metatts.model import layers

    monkeypatch.setattr(layers, "_NATIVE_CONV", native)  # both paths, whatever this CPU has
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 4, kernel, padding=kernel // 2).double()
    x = torch.randn(2, 11, 6, dtype=torch.float64, requires_grad=True)
    expected = conv(x.transpose(1, 2)).transpose(1, 2)
    got = layers.conv1d_time_major(x, conv)
    assert torch.allclose(got, expected, atol=1e-12)
    grads = torch.autograd.grad(got.square().sum(), [x, conv.weight])
    reference = torch.autograd.grad(expected.square().sum(), [x, conv.weight])
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(grads, reference))


@pytest.mark.parametrize("speaker_dim", [None, 8])
def test_a_stack_neither_reads_nor_emits_its_padded_positions(speaker_dim):
    """The blocks leave padded positions unmasked (only the FFN's input and the stack's output
    are masked): whatever is there, the real positions and their gradients are the same, each
    item is what it is alone, and the output is zero where padded."""
    from metatts.model.layers import FFTStack

    torch.manual_seed(0)
    stack = FFTStack(2, 16, 2, 32, 3, 0.0, speaker_dim, adapter_rank=4 if speaker_dim else 0)
    for block in stack.blocks:  # adapters start at zero: give them something to carry
        if block.adapter is not None:
            torch.nn.init.normal_(block.adapter.up.weight)
    lengths = torch.tensor([9, 5, 2])
    mask = torch.arange(9) < lengths[:, None]
    speaker = None if speaker_dim is None else torch.randn(3, speaker_dim)
    x = torch.randn(3, 9, 16) * mask[..., None]
    noisy = x + 1e3 * torch.randn(3, 9, 16) * ~mask[..., None]  # garbage where padded
    params = dict(stack.named_parameters())

    def run(inputs):
        return functional_call(stack, params, (inputs, mask, speaker))

    out = run(x)
    assert torch.equal(out, run(noisy))
    assert torch.all(out[~mask] == 0)
    grads = torch.autograd.grad(out.square().sum(), list(params.values()))
    noisy_grads = torch.autograd.grad(run(noisy).square().sum(), list(params.values()))
    assert all(torch.equal(a, b) for a, b in zip(grads, noisy_grads))
    for i, n in enumerate(lengths.tolist()):
        alone = functional_call(stack, params, (x[i:i + 1, :n], mask[i:i + 1, :n],
                                                None if speaker is None else speaker[i:i + 1]))
        assert torch.allclose(alone[0], out[i, :n], atol=1e-5)
    # inside the stack a block's padded inputs are whatever the block before left there: its
    # real outputs, and the gradients reaching its parameters and real inputs, do not see them
    block = stack.blocks[1]
    real = x.clone().requires_grad_(True)
    junk = (x + 1e3 * torch.randn(3, 9, 16) * ~mask[..., None]).requires_grad_(True)
    a, b = block(real, mask, speaker), block(junk, mask, speaker)
    assert torch.equal(a[mask], b[mask])
    weights = list(block.parameters())
    ga = torch.autograd.grad(a[mask].square().sum(), [real, *weights])
    gb = torch.autograd.grad(b[mask].square().sum(), [junk, *weights])
    assert torch.equal(ga[0][mask], gb[0][mask]) and torch.all(gb[0][~mask] == 0)
    assert all(torch.allclose(u, v, atol=1e-6) for u, v in zip(ga[1:], gb[1:]))


def test_fused_attention_matches_the_written_out_one(monkeypatch):
    from metatts.model import layers

    torch.manual_seed(0)
    attention = layers.SelfAttention(32, 2, dropout=0.0)
    x = torch.randn(3, 11, 32, requires_grad=True)
    mask = torch.arange(11) < torch.tensor([11, 7, 4])[:, None]
    fused = attention(x, mask)
    (fused_grad,) = torch.autograd.grad(fused.square().sum(), x)
    monkeypatch.setattr(layers, "fused_attention", lambda q: False)
    manual = attention(x, mask)
    (manual_grad,) = torch.autograd.grad(manual.square().sum(), x)
    assert torch.allclose(fused, manual, atol=1e-5)
    assert torch.allclose(fused_grad, manual_grad, atol=1e-4)
    # inside torch.func the written-out path runs: a gradient of a gradient exists
    params = dict(attention.named_parameters())

    def inner(p):
        return functional_call(attention, p, (x.detach(), mask)).square().sum()

    monkeypatch.undo()
    second = grad(lambda p: grad(inner)(p)["qkv.weight"].square().sum())(params)
    assert second["qkv.weight"].abs().sum() > 0


def test_attention_is_fused_unless_a_gradient_of_a_gradient_is_needed():
    from metatts.model import layers

    seen = []

    def probe(x):
        seen.append(layers.fused_attention(x))
        return x.square().sum()

    x = torch.ones(3)
    probe(x)
    grad(probe)(x)  # first-order adaptation and FOMAML: one backward, the fused kernel
    grad(lambda y: grad(probe)(y).sum())(x)  # nested transforms: written out
    with layers.higher_order():  # second-order MAML's inner loop: written out
        grad(probe)(x)
    probe(x.bfloat16())  # bfloat16 on a CPU: written out, the faster one there
    assert seen == [True, True, False, False, False]


@pytest.mark.parametrize("groups", [("embedding",), ("decoder",), ("all",)])
def test_inner_loop_on_encoded_text_gives_the_same_voice_without_the_text_encoder(
        groups, monkeypatch):
    """fixed_text_states attaches the text encoder's output unless the encoder or the token
    embedding adapts; the inner loop then takes the same steps without running the encoder."""
    from metatts.meta import InnerConfig, initial_params, inner_loop
    from metatts.meta.support import fixed_alignment, fixed_text_states

    model, items = tiny_model().eval(), _support_items()
    start = initial_params(model, groups, detach=True)
    aligned = fixed_alignment(model, items, list(start))
    encoded = fixed_text_states(model, aligned, list(start))
    cached = groups != ("all",)
    assert all((x.text_states is not None) == cached for x in encoded)
    if cached:
        assert [tuple(x.text_states.shape) for x in encoded] == [(6, TINY.hidden),
                                                                 (8, TINY.hidden),
                                                                 (5, TINY.hidden)]
    # SGD: Adam would scale the rounding of near-zero gradients up to a step
    cfg = InnerConfig(groups=groups, steps=3, lr=0.05, optimizer="sgd", batching="minibatch",
                      batch_size=2)
    plain = inner_loop(model, start, aligned, collate, cfg)
    calls = []
    monkeypatch.setattr(model.encoder, "forward",
                        lambda *a, f=model.encoder.forward: calls.append(1) or f(*a))
    fast = inner_loop(model, start, encoded, collate, cfg)
    assert (len(calls) == 0) == cached  # the steps never ran the text encoder
    assert fast.losses == pytest.approx(plain.losses, rel=1e-5)
    # the same up to float rounding (each item encoded alone instead of padded in its batch)
    for name in start:
        torch.testing.assert_close(fast.params[name], plain.params[name])


def test_token_expansion_is_the_alignment_matrix_product():
    from metatts.model.aligner import expand_tokens

    torch.manual_seed(0)
    durations = torch.tensor([[2, 0, 3, 1], [1, 4, 0, 0], [0, 1, 1, 1]])  # zero-length tokens too
    states = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    for frames in (6, 9):  # the longest item's total, and padding past it
        path = durations_to_alignment(durations, frames).double()
        expected = path @ states
        got = expand_tokens(states, durations, frames)
        assert torch.equal(got, expected)
        weights = torch.randn_like(expected)
        (a,) = torch.autograd.grad((expected * weights).sum(), states)
        (b,) = torch.autograd.grad((got * weights).sum(), states)
        assert torch.allclose(a, b, atol=1e-12)
