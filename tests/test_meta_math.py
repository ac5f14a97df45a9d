"""The mathematics of metatts.meta on a tiny 'speaker' regression model, in float64."""

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from metatts.meta import (
    InnerConfig,
    InnerLearningRates,
    Task,
    adapted_names,
    initial_params,
    inner_loop,
    meta_gradient,
    task_gradient,
    write_grads,
)
from metatts.meta.inner_optim import FusedAdam, adam_init, adam_step, fusable


@dataclass
class TinyLoss:
    total: Tensor  # scalar
    mse: Tensor


class Tiny(nn.Module):
    """y = decoder(tanh(encoder(x) + speaker) * (1 + cond(speaker))): embedding, a conditional
    norm-like scale, a decoder, and an encoder that only 'all' adapts."""

    def __init__(self):
        super().__init__()
        self.speaker = nn.Parameter(0.1 * torch.randn(3))
        self.encoder = nn.Linear(2, 3)
        self.cond = nn.Linear(3, 3)
        self.decoder = nn.Linear(3, 1)

    def loss(self, batch):
        x, y = batch  # (B, 2), (B,)
        h = torch.tanh(self.encoder(x) + self.speaker) * (1 + self.cond(self.speaker))  # (B, 3)
        mse = ((self.decoder(h).squeeze(-1) - y) ** 2).mean()
        return TinyLoss(total=mse, mse=mse)

    def parameter_groups(self):
        return {"embedding": ["speaker"], "conditional_norms": ["cond.weight", "cond.bias"],
                "decoder": ["decoder.weight", "decoder.bias"],
                "all": [name for name, _ in self.named_parameters()]}


def reference_loss(p, batch):
    """The same loss written by hand over a parameter dict, independent of torch.func."""
    x, y = batch
    h = torch.tanh(x @ p["encoder.weight"].T + p["encoder.bias"] + p["speaker"])
    h = h * (1 + p["cond.weight"] @ p["speaker"] + p["cond.bias"])
    return ((h @ p["decoder.weight"].T + p["decoder.bias"]).squeeze(-1) - y).pow(2).mean()


def collate(items):
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def speaker_items(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = torch.sin(x @ torch.randn(2, generator=g, dtype=torch.float64)) + 0.3 * seed
    return list(zip(x, y))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Tiny().double()


def task(seed):
    return Task(support=speaker_items(seed), query=speaker_items(seed + 100, n=4))


def reference_maml(model, t, names, steps, lr, lrs=None):
    """Hand-unrolled second-order MAML with torch.autograd.grad(create_graph=True)."""
    theta = dict(model.named_parameters())
    phi = {n: theta[n] for n in names}
    support, query = collate(t.support), collate(t.query)
    for _ in range(steps):
        g = torch.autograd.grad(reference_loss({**theta, **phi}, support), list(phi.values()),
                                create_graph=True)
        phi = {n: p - (lr if lrs is None else lrs[n]) * gi for (n, p), gi in zip(phi.items(), g)}
    wrt = list(theta.values()) + ([] if lrs is None else list(lrs.values()))
    return torch.autograd.grad(reference_loss({**theta, **phi}, query), wrt)


def test_model_and_reference_loss_agree(model):
    batch = collate(speaker_items(1))
    assert torch.allclose(model.loss(batch).total,
                          reference_loss(dict(model.named_parameters()), batch))


@pytest.mark.parametrize("groups", [("embedding",), ("embedding", "decoder"), ("all",)])
def test_maml_meta_gradient_equals_hand_unrolled_reference(model, groups):
    cfg = InnerConfig(groups=groups, steps=3, lr=0.1)
    t = task(1)
    got = task_gradient(model, t, collate, cfg, "maml").grads
    ref = reference_maml(model, t, adapted_names(model, groups), 3, 0.1)
    assert list(got) == [n for n, _ in model.named_parameters()]
    for g, r in zip(got.values(), ref):
        assert torch.allclose(g, r, atol=1e-12)
    first_order = task_gradient(model, t, collate, cfg, "fomaml").grads
    assert not all(torch.allclose(got[n], first_order[n]) for n in got)  # the test can tell


def test_meta_sgd_rates_get_the_second_order_gradient(model):
    cfg = InnerConfig(groups=("embedding", "conditional_norms"), steps=2, lr=0.05)
    rates = InnerLearningRates(initial_params(model, cfg.groups, detach=True), cfg.lr).double()
    t = task(2)
    got = task_gradient(model, t, collate, cfg, "maml", lrs=rates.as_dict())
    ref = reference_maml(model, t, adapted_names(model, cfg.groups), 2, None, rates.as_dict())
    n = len(got.grads)
    for g, r in zip([*got.grads.values(), *got.lr_grads.values()], ref):
        assert torch.allclose(g, r, atol=1e-12)
    assert all(g.abs().sum() > 0 for g in got.lr_grads.values())
    fo = task_gradient(model, t, collate, cfg, "fomaml", lrs=rates.as_dict()).lr_grads
    assert set(fo) == set(rates.as_dict()) and all(torch.isfinite(g).all() for g in fo.values())
    assert n == len(list(model.parameters()))


def test_fomaml_gradient_is_the_query_gradient_at_the_adapted_parameters(model):
    cfg = InnerConfig(groups=("embedding", "decoder"), steps=3, lr=0.1)
    t = task(3)
    got = task_gradient(model, t, collate, cfg, "fomaml").grads
    phi = inner_loop(model, initial_params(model, cfg.groups, detach=True), t.support, collate,
                     cfg).params
    at_phi = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    at_phi.update({n: p.clone().requires_grad_() for n, p in phi.items()})
    ref = torch.autograd.grad(reference_loss(at_phi, collate(t.query)), list(at_phi.values()))
    for g, r in zip(got.values(), ref):
        assert torch.allclose(g, r, atol=1e-12)


def test_reptile_step_moves_the_start_toward_the_adapted_parameters(model):
    cfg = InnerConfig(groups=("embedding", "decoder"), steps=5, lr=0.1)
    tasks = [task(4), task(5)]
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}
    phis = [inner_loop(model, initial_params(model, cfg.groups, detach=True), t.support, collate,
                       cfg).params for t in tasks]
    mean_phi = {n: (phis[0][n] + phis[1][n]) / 2 for n in phis[0]}
    mg = meta_gradient(model, tasks, collate, cfg, "reptile")
    assert set(mg.grads) == set(adapted_names(model, cfg.groups)) and mg.tasks == 2
    eps = 0.25
    optimizer = torch.optim.SGD(model.parameters(), lr=eps)
    optimizer.zero_grad()
    write_grads(dict(model.named_parameters()), mg.grads)
    optimizer.step()
    after = dict(model.named_parameters())
    for n, phi in mean_phi.items():
        assert torch.allclose(after[n], theta[n] + eps * (phi - theta[n]), atol=1e-12)
        assert (after[n] - phi).norm() < (theta[n] - phi).norm()
    for n in ("encoder.weight", "cond.bias"):  # not adapted: Reptile leaves them alone
        assert torch.equal(after[n], theta[n])


def test_meta_gradient_is_the_mean_over_tasks(model):
    cfg = InnerConfig(groups=("embedding",), steps=2, lr=0.1)
    tasks = [task(6), task(7)]
    mg = meta_gradient(model, tasks, collate, cfg, "maml")
    each = [task_gradient(model, t, collate, cfg, "maml").grads for t in tasks]
    for n, g in mg.grads.items():
        assert torch.allclose(g, (each[0][n] + each[1][n]) / 2, atol=1e-12)
    assert len(mg.query_losses) == 2 and [len(s) for s in mg.support_losses] == [2, 2]


@pytest.mark.parametrize("optimizer,batching,lr", [
    ("sgd", "full", 0.1), ("sgd", "stochastic", 0.05), ("sgd", "minibatch", 0.1),
    ("adam", "full", 0.02), ("adam", "minibatch", 0.02)])
def test_adaptation_lowers_the_support_loss(model, optimizer, batching, lr):
    cfg = InnerConfig(groups=("all",), steps=60, lr=lr, optimizer=optimizer, batching=batching,
                      batch_size=3)
    support = speaker_items(8)
    start = initial_params(model, cfg.groups, detach=True)
    adapted = inner_loop(model, start, support, collate, cfg).params
    loss = lambda p: reference_loss({**dict(model.named_parameters()), **p}, collate(support))
    assert loss(adapted) < 0.8 * loss(start)


def test_embedding_only_adaptation_leaves_every_other_parameter_untouched(model):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = InnerConfig(groups=("embedding",), steps=10, lr=0.2)
    result = inner_loop(model, initial_params(model, cfg.groups, detach=True), speaker_items(9),
                        collate, cfg)
    assert list(result.params) == ["speaker"]
    assert not torch.equal(result.params["speaker"], before["speaker"])
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) and p.grad is None


def test_same_seed_same_result_and_global_rng_untouched(model):
    support = speaker_items(10)
    run = lambda seed: inner_loop(model, initial_params(model, ("all",), detach=True), support,
                                  collate, InnerConfig(groups=("all",), steps=8, lr=0.1,
                                                       batching="stochastic", seed=seed))
    torch.manual_seed(123)
    a = run(0)
    after_a = torch.rand(1)
    torch.manual_seed(123)
    b = run(0)
    assert torch.rand(1) == after_a  # a seeded loop restores the global RNG
    c = run(1)
    assert a.losses == b.losses and all(torch.equal(a.params[n], b.params[n]) for n in a.params)
    assert a.losses != c.losses


def test_a_seed_fixes_the_models_own_randomness_too(model):
    class Dropped(Tiny):
        def loss(self, batch):
            x, y = batch
            return super().loss((nn.functional.dropout(x, 0.5, self.training), y))

    torch.manual_seed(0)
    noisy = Dropped().double()
    cfg = InnerConfig(groups=("all",), steps=5, lr=0.1)
    run = lambda: inner_loop(noisy, initial_params(noisy, cfg.groups, detach=True),
                             speaker_items(12), collate, cfg).losses
    assert run() == run()


def test_on_step_reports_each_step_and_no_graph_is_kept_when_adapting(model):
    seen = []
    cfg = InnerConfig(groups=("embedding", "decoder"), steps=12, lr=0.1)
    result = inner_loop(model, initial_params(model, cfg.groups, detach=True), speaker_items(11),
                        collate, cfg, on_step=lambda step, loss: seen.append((step, loss)))
    assert [s for s, _ in seen] == list(range(12))
    assert [loss for _, loss in seen] == result.losses and result.losses[-1] < result.losses[0]
    assert not any(p.requires_grad for p in result.params.values())


def test_adam_step_matches_torch_optim_adam():
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    ours, state = {"w": w.detach().clone()}, adam_init({"w": w})
    optimizer = torch.optim.Adam([w], lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        (w ** 3).sum().backward()
        optimizer.step()
        step, state = adam_step({"w": 3 * ours["w"] ** 2}, state, lr=0.1)
        ours = {"w": ours["w"] - step["w"]}
    assert torch.allclose(ours["w"], w.detach(), atol=1e-12)


def test_fused_adam_takes_the_written_out_steps_and_leaves_the_start_alone(model):
    """Adaptation's Adam runs as PyTorch's fused kernel where nothing is differentiated through
    the steps: the same parameters as adam_step's, every kept step its own copy, the start
    unchanged; where the start requires grad (an outer loop's) or rates are learned, the steps
    are written out."""
    start = initial_params(model, ("all",), detach=True)
    before = {n: p.clone() for n, p in start.items()}
    grads = [{n: torch.randn_like(p) for n, p in start.items()} for _ in range(4)]
    # gradients laid out otherwise than their parameters, as torch.func's can be: a transposed
    # view of a matrix's, an expanded (zero-stride) one of a vector's
    grads[1] = {n: g.T.contiguous().T if g.ndim == 2 else g for n, g in grads[1].items()}
    grads[2] = {n: g[:1].expand_as(g) if g.ndim == 1 else g for n, g in grads[2].items()}
    assert any(not g.is_contiguous() for g in grads[1].values())
    assert any(not g.is_contiguous() for g in grads[2].values())
    fused, written, state = FusedAdam(start, lr=0.05), dict(start), adam_init(start)
    for g in grads:
        ours = fused.step(g)
        step, state = adam_step(g, state, lr=0.05)
        written = {n: written[n] - step[n] for n in written}
    for n in start:
        torch.testing.assert_close(ours[n], written[n])
        assert torch.equal(start[n], before[n])
    assert fusable(start)
    assert not fusable(initial_params(model, ("all",), detach=False))  # an outer loop's start
    assert not fusable(start, lrs={n: torch.ones(()) for n in start})
    assert not fusable(start, create_graph=True)

    cfg = InnerConfig(groups=("all",), steps=3, lr=0.05, optimizer="adam")
    run = inner_loop(model, start, speaker_items(11), collate, cfg, keep=(1, 2, 3))
    assert not torch.equal(run.kept[1]["speaker"], run.kept[2]["speaker"])
    assert all(torch.equal(start[n], before[n]) for n in start)


def test_bad_input_is_refused_with_a_reason(model):
    with pytest.raises(ValueError, match="unknown parameter group"):
        adapted_names(model, ("speakers",))
    with pytest.raises(TypeError, match="tuple of group names"):
        InnerConfig(groups="embedding")
    with pytest.raises(ValueError, match="unknown optimizer"):
        InnerConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="not parameters of Tiny"):
        inner_loop(model, {"speakr": torch.zeros(3)}, speaker_items(1), collate, InnerConfig())
    with pytest.raises(ValueError, match="support set is empty"):
        inner_loop(model, initial_params(model, ("embedding",), detach=True), [], collate,
                   InnerConfig())
    with pytest.raises(ValueError, match="through Adam"):
        task_gradient(model, task(1), collate, InnerConfig(optimizer="adam"), "maml")
    with pytest.raises(ValueError, match="unknown meta-learning algorithm"):
        task_gradient(model, task(1), collate, InnerConfig(), "mamll")


def test_kept_steps_equal_separate_shorter_runs(model):
    support = speaker_items(11)
    start = initial_params(model, ("all",), detach=True)
    cfg = lambda n: InnerConfig(groups=("all",), steps=n, lr=0.05, optimizer="adam",
                                batching="stochastic", seed=3)
    long = inner_loop(model, start, support, collate, cfg(6), keep=(0, 2, 6))
    assert sorted(long.kept) == [0, 2, 6]
    for n in (0, 2, 6):
        alone = inner_loop(model, start, support, collate, cfg(n)).params
        for name in start:
            torch.testing.assert_close(long.kept[n][name], alone[name])
    with pytest.raises(ValueError, match="outside 0..6"):
        inner_loop(model, start, support, collate, cfg(6), keep=(7,))


def test_per_tensor_adam_rates_get_the_first_order_gradient(model):
    """One Adam step moves each tensor by rate * m / sqrt(v), which the support gradient alone
    fixes: the first-order gradient of the query loss in each tensor's rate is then exact."""
    cfg = InnerConfig(groups=("embedding", "decoder"), steps=1, lr=0.05, optimizer="adam")
    rates = InnerLearningRates(initial_params(model, cfg.groups, detach=True), cfg.lr,
                               per_tensor=True).double()
    assert all(r.shape == (1,) * p.ndim for r, p in
               zip(rates.as_dict().values(), initial_params(model, cfg.groups, detach=True).values()))
    t = task(6)
    got = task_gradient(model, t, collate, cfg, "fomaml", lrs=rates.as_dict()).lr_grads

    def query_at(values):
        lrs = {n: torch.full_like(r, values.get(n, cfg.lr)) for n, r in rates.as_dict().items()}
        phi = inner_loop(model, initial_params(model, cfg.groups, detach=True), t.support,
                         collate, cfg, lrs=lrs).params
        theta = {n: p.detach() for n, p in model.named_parameters()}
        return float(reference_loss({**theta, **phi}, collate(t.query)))

    h = 1e-6
    for name in rates.names:
        numeric = (query_at({name: cfg.lr + h}) - query_at({name: cfg.lr - h})) / (2 * h)
        assert got[name].shape == rates.as_dict()[name].shape
        assert abs(float(got[name].sum()) - numeric) < 1e-6 * max(1.0, abs(numeric))
    # equal rates give exactly the plain Adam loop
    same = inner_loop(model, initial_params(model, cfg.groups, detach=True), t.support, collate,
                      cfg, lrs={n: r.detach() for n, r in rates.as_dict().items()}).params
    plain = inner_loop(model, initial_params(model, cfg.groups, detach=True), t.support, collate,
                       cfg).params
    assert all(torch.equal(same[n], plain[n]) for n in plain)
