"""gankit.objectives: losses against their closed forms, label smoothing, instance noise annealing."""
from __future__ import annotations

import math

import pytest
import torch

from gankit.config import ConfigError, ObjectiveConfig
from gankit.objectives import Minimax, NonSaturating, bce_logits, build_objective

REAL = torch.tensor([2.0, -1.0, 0.5, 30.0])
FAKE = torch.tensor([-3.0, 0.0, 1.5, -40.0])


def sig(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x.double())


def log_d(x: torch.Tensor) -> torch.Tensor:
    """log D = log sigmoid(logit), in float64 (1 - sigmoid(30) would lose precision)."""
    return torch.nn.functional.logsigmoid(x.double())


def log_1m_d(x: torch.Tensor) -> torch.Tensor:
    """log(1 - D) = log sigmoid(-logit)."""
    return torch.nn.functional.logsigmoid(-x.double())


class Fixed(torch.nn.Module):
    """A 'discriminator' that returns given logits and records the inputs it saw."""

    def __init__(self, *logits: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.seen = list(logits), []

    def forward(self, x, y=None):
        self.seen.append(x)
        return self.logits.pop(0)


def test_bce_logits_matches_log_sigmoid_forms():
    x = torch.tensor([-2.0, 0.0, 3.0])
    p = sig(x)
    assert bce_logits(x, 1.0).item() == pytest.approx((-torch.log(p)).mean().item(), rel=1e-6)
    assert bce_logits(x, 0.0).item() == pytest.approx((-torch.log(1 - p)).mean().item(), rel=1e-6)
    mixed = (-(0.7 * torch.log(p) + 0.3 * torch.log(1 - p))).mean().item()
    assert bce_logits(x, 0.7).item() == pytest.approx(mixed, rel=1e-6)
    # stable for huge logits: no inf, no nan
    big = torch.tensor([1000.0, -1000.0])
    assert torch.isfinite(bce_logits(big, 1.0)) and torch.isfinite(bce_logits(big, 0.0))
    assert bce_logits(torch.tensor([-1000.0]), 1.0).item() == pytest.approx(1000.0)


def test_ns_losses_closed_form():
    obj = build_objective(ObjectiveConfig(name="ns"))
    assert isinstance(obj, NonSaturating)
    pr, pf = sig(REAL), sig(FAKE)
    expected_d = -log_d(REAL).mean() - log_1m_d(FAKE).mean()
    loss_d, stats = obj.discriminator_loss(Fixed(REAL, FAKE), torch.zeros(4, 2), torch.zeros(4, 2))
    assert loss_d.item() == pytest.approx(expected_d.item(), rel=1e-5)
    assert stats["loss_d"].item() == pytest.approx(loss_d.item())
    assert stats["d_real"].item() == pytest.approx(pr.mean().item(), rel=1e-5)
    assert stats["d_fake"].item() == pytest.approx(pf.mean().item(), rel=1e-5)
    loss_g, g_stats = obj.generator_loss(Fixed(FAKE), torch.zeros(4, 2))
    assert loss_g.item() == pytest.approx(-log_d(FAKE).mean().item(), rel=1e-5)  # -log D(G(z))
    assert set(g_stats) == {"loss_g"}


def test_minimax_generator_loss_closed_form():
    obj = build_objective(ObjectiveConfig(name="minimax"))
    assert isinstance(obj, Minimax)
    loss_g, _ = obj.generator_loss(Fixed(FAKE), torch.zeros(4, 2))
    assert loss_g.item() == pytest.approx(log_1m_d(FAKE).mean().item(), rel=1e-5)  # log(1 - D(G(z)))
    # D's loss is the same game for both objectives
    ns = build_objective(ObjectiveConfig(name="ns"))
    a, _ = obj.discriminator_loss(Fixed(REAL, FAKE), torch.zeros(4, 2), torch.zeros(4, 2))
    b, _ = ns.discriminator_loss(Fixed(REAL, FAKE), torch.zeros(4, 2), torch.zeros(4, 2))
    assert a.item() == b.item()


def test_minimax_saturates_where_ns_does_not():
    # when D confidently rejects fakes, minimax gives G a vanishing gradient, ns a strong one
    logits = torch.tensor([-8.0], requires_grad=True)
    build_objective(ObjectiveConfig(name="minimax")).g_term(logits).backward()
    minimax_grad = logits.grad.abs().item()
    logits.grad = None
    build_objective(ObjectiveConfig(name="ns")).g_term(logits).backward()
    assert logits.grad.abs().item() > 0.99 and minimax_grad < 1e-3


@pytest.mark.parametrize("smoothing", [0.1, 0.25])
def test_label_smoothing_targets_only_the_real_term(smoothing):
    obj = build_objective(ObjectiveConfig(name="ns", label_smoothing=smoothing))
    plain = build_objective(ObjectiveConfig(name="ns"))
    t = 1 - smoothing
    expected = -(t * log_d(REAL) + (1 - t) * log_1m_d(REAL)).mean() - log_1m_d(FAKE).mean()
    loss, _ = obj.discriminator_loss(Fixed(REAL, FAKE), torch.zeros(4, 2), torch.zeros(4, 2))
    base, _ = plain.discriminator_loss(Fixed(REAL, FAKE), torch.zeros(4, 2), torch.zeros(4, 2))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # the difference is smoothing * mean(logit): s * (softplus(r) - softplus(-r)) = s * r
    assert (loss - base).item() == pytest.approx(smoothing * REAL.mean().item(), rel=1e-5)
    # G's loss is unchanged (one-sided)
    g1, _ = obj.generator_loss(Fixed(FAKE), torch.zeros(4, 2))
    g0, _ = plain.generator_loss(Fixed(FAKE), torch.zeros(4, 2))
    assert g1.item() == g0.item()


def test_instance_noise_anneals_linearly_to_zero():
    obj = build_objective(ObjectiveConfig(instance_noise=0.2))
    assert obj.noise_std(0, 100) == pytest.approx(0.2)
    assert obj.noise_std(25, 100) == pytest.approx(0.15)
    assert obj.noise_std(50, 100) == pytest.approx(0.1)
    assert obj.noise_std(100, 100) == 0.0
    assert obj.noise_std(150, 100) == 0.0
    stds = [obj.noise_std(s, 10) for s in range(11)]
    assert all(a > b for a, b in zip(stds, stds[1:]))
    assert all(math.isclose(a - b, 0.02) for a, b in zip(stds, stds[1:]))
    fixed = build_objective(ObjectiveConfig(instance_noise=0.2, instance_noise_steps=10))
    assert fixed.noise_std(5, 1000) == pytest.approx(0.1) and fixed.noise_std(10, 1000) == 0.0
    off = build_objective(ObjectiveConfig())
    assert off.noise_std(0, 100) == 0.0
    assert build_objective(ObjectiveConfig(instance_noise=0.2)).noise_std(0, 0) == pytest.approx(0.2)


def test_instance_noise_perturbs_d_inputs_reproducibly():
    obj = build_objective(ObjectiveConfig(instance_noise=0.5))
    real, fake = torch.zeros(64, 2), torch.ones(64, 2)
    d = Fixed(REAL, FAKE)
    obj.discriminator_loss(d, real, fake, noise_std=0.5, gen=torch.Generator().manual_seed(0))
    noisy_real, noisy_fake = d.seen
    assert noisy_real.std().item() == pytest.approx(0.5, rel=0.2)
    assert (noisy_fake - 1).std().item() == pytest.approx(0.5, rel=0.2)
    d2 = Fixed(REAL, FAKE)
    obj.discriminator_loss(d2, real, fake, noise_std=0.5, gen=torch.Generator().manual_seed(0))
    assert torch.equal(d2.seen[0], noisy_real) and torch.equal(d2.seen[1], noisy_fake)
    d3 = Fixed(REAL, FAKE)
    obj.discriminator_loss(d3, real, fake, noise_std=0.0)
    assert d3.seen[0] is real and d3.seen[1] is fake  # no noise: inputs untouched


def test_unknown_objective_name():
    with pytest.raises(ConfigError, match="objective.name: unknown objective 'wgan-lp'; did you mean"):
        build_objective(ObjectiveConfig(name="wgan-lp"))


# ---------------------------------------------------------------------------------------------
# Critics and the other losses: closed forms on hand-made outputs


def _losses(name: str, **cfg) -> tuple[float, float, dict]:
    obj = build_objective(ObjectiveConfig(name=name, **cfg))
    loss_d, stats = obj.discriminator_loss(Fixed(REAL, FAKE), torch.zeros(4, 2), torch.zeros(4, 2))
    loss_g, _ = obj.generator_loss(Fixed(FAKE, REAL), torch.zeros(4, 2), real=torch.zeros(4, 2))
    return loss_d.item(), loss_g.item(), stats


def test_wgan_losses_closed_form_and_raw_outputs():
    r, f = REAL.double(), FAKE.double()
    for name in ("wgan", "wgan-gp"):
        loss_d, loss_g, stats = _losses(name, gp_weight=0.0)
        assert loss_d == pytest.approx((f.mean() - r.mean()).item(), rel=1e-6)  # E[D(G(z))] - E[D(x)]
        assert loss_g == pytest.approx(-f.mean().item(), rel=1e-6)
        # a critic's outputs are no probabilities: the logs show them raw
        assert stats["d_real"].item() == pytest.approx(r.mean().item(), rel=1e-6)
        assert stats["d_fake"].item() == pytest.approx(f.mean().item(), rel=1e-6)
        assert not build_objective(ObjectiveConfig(name=name)).logistic_d


def test_lsgan_losses_closed_form():
    r, f = REAL.double(), FAKE.double()
    loss_d, loss_g, stats = _losses("lsgan")
    assert loss_d == pytest.approx((0.5 * (r - 1).square().mean() + 0.5 * f.square().mean()).item(), rel=1e-6)
    assert loss_g == pytest.approx((0.5 * (f - 1).square().mean()).item(), rel=1e-6)
    assert stats["d_real"].item() == pytest.approx(r.mean().item(), rel=1e-6)


def test_hinge_losses_closed_form():
    r, f = REAL.double(), FAKE.double()
    loss_d, loss_g, _ = _losses("hinge")
    # real: max(0, 1 - [2, -1, .5, 30]) = [0, 2, .5, 0]; fake: max(0, 1 + [-3, 0, 1.5, -40]) = [0, 1, 2.5, 0]
    assert loss_d == pytest.approx(2.5 / 4 + 3.5 / 4, rel=1e-6)
    assert loss_d == pytest.approx(((1 - r).clamp(min=0).mean() + (1 + f).clamp(min=0).mean()).item())
    assert loss_g == pytest.approx(-f.mean().item(), rel=1e-6)


def test_rals_losses_closed_form():
    r, f = REAL.double(), FAKE.double()
    real_rel, fake_rel = r - f.mean(), f - r.mean()
    loss_d, loss_g, stats = _losses("rals")
    assert loss_d == pytest.approx((-log_d(real_rel).mean() - log_1m_d(fake_rel).mean()).item(), rel=1e-6)
    # symmetric: G wants fakes more real than the average real, and reals less real than the average fake
    assert loss_g == pytest.approx((-log_d(fake_rel).mean() - log_1m_d(real_rel).mean()).item(), rel=1e-6)
    assert stats["d_fake"].item() == pytest.approx(sig(fake_rel).mean().item(), rel=1e-6)
    smoothed, _, _ = _losses("rals", label_smoothing=0.1)
    assert smoothed == pytest.approx((-(0.9 * log_d(real_rel) + 0.1 * log_1m_d(real_rel)).mean()
                                      - log_1m_d(fake_rel).mean()).item(), rel=1e-6)
    obj = build_objective(ObjectiveConfig(name="rals"))
    with pytest.raises(ValueError, match="needs a real batch"):
        obj.generator_loss(Fixed(FAKE), torch.zeros(4, 2))


def test_rpgan_losses_closed_form():
    r, f = REAL.double(), FAKE.double()
    loss_d, loss_g, stats = _losses("rpgan")
    # pairs (real_i, fake_i): D wants real_i more real than fake_i, G the converse
    assert loss_d == pytest.approx(-log_d(r - f).mean().item(), rel=1e-6)
    assert loss_g == pytest.approx(-log_d(f - r).mean().item(), rel=1e-6)
    assert stats["d_real"].item() == pytest.approx(sig(r - f).mean().item(), rel=1e-6)
    assert stats["d_fake"].item() == pytest.approx(1 - sig(r - f).mean().item(), rel=1e-6)
    # unlike rals, pairing is not a batch mean: permuting the fakes changes the loss
    perm = torch.tensor([3, 2, 1, 0])
    obj = build_objective(ObjectiveConfig(name="rpgan"))
    shuffled, _ = obj.discriminator_loss(Fixed(REAL, FAKE[perm]), torch.zeros(4, 2), torch.zeros(4, 2))
    assert shuffled.item() != pytest.approx(loss_d, rel=1e-3)
    with pytest.raises(ValueError, match="needs a real batch"):
        obj.generator_loss(Fixed(FAKE), torch.zeros(4, 2))


@pytest.mark.parametrize("name", ["wgan", "wgan-gp", "lsgan", "hinge"])
def test_label_smoothing_is_refused_where_there_are_no_labels(name):
    with pytest.raises(ConfigError, match="objective.label_smoothing applies to the logistic"):
        build_objective(ObjectiveConfig(name=name, label_smoothing=0.1))


# ---------------------------------------------------------------------------------------------
# Penalties and clipping


def linear_critic(weight: list[float]) -> torch.nn.Module:
    """D(x) = <w, x>: its input gradient is w everywhere, so |grad| = |w|."""
    d = torch.nn.Linear(len(weight), 1, bias=False)
    with torch.no_grad():
        d.weight.copy_(torch.tensor([weight]))

    class Critic(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = d

        def forward(self, x, y=None):
            return self.lin(x).squeeze(1)

    return Critic()


def test_gradient_penalty_vanishes_for_a_unit_norm_linear_critic():
    obj = build_objective(ObjectiveConfig(name="wgan-gp"))
    real, fake = torch.randn(16, 2), torch.randn(16, 2) + 3
    gen = torch.Generator().manual_seed(0)
    _, stats = obj.discriminator_loss(linear_critic([0.6, 0.8]), real, fake, gen=gen)
    assert stats["gp"].item() < 1e-10
    # |w| = 2: (2 - 1)^2 = 1 at every interpolate, weighted by lambda = 10 in D's loss
    d = linear_critic([1.2, 1.6])
    loss, stats = obj.discriminator_loss(d, real, fake, gen=gen)
    assert stats["gp"].item() == pytest.approx(1.0, rel=1e-5)
    plain = (d(fake).mean() - d(real).mean()).item()
    assert loss.item() == pytest.approx(plain + 10.0, rel=1e-5)
    # the penalty trains D: d gp / d w = 2 (|w| - 1) w / |w| = w, times lambda
    loss.backward()
    expected = 10.0 * torch.tensor([[1.2, 1.6]]) + (fake.mean(0) - real.mean(0))
    assert torch.allclose(d.lin.weight.grad, expected, atol=1e-5)


def test_r1_penalty_is_gamma_half_grad_norm_squared_and_lazy():
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    d = linear_critic([3.0, 4.0])  # |grad D(x)|^2 = 25 on every real sample
    base, _ = build_objective(ObjectiveConfig(name="hinge")).discriminator_loss(d, real, fake)
    obj = build_objective(ObjectiveConfig(name="hinge", r1_gamma=0.2))
    loss, stats = obj.discriminator_loss(d, real, fake)
    assert stats["r1"].item() == pytest.approx(25.0, rel=1e-5)
    assert (loss - base).item() == pytest.approx(0.1 * 25.0, rel=1e-5)
    lazy = build_objective(ObjectiveConfig(name="ns", r1_gamma=0.2, r1_every=4))
    ns_base, _ = build_objective(ObjectiveConfig(name="ns")).discriminator_loss(d, real, fake)
    for step in range(6):
        loss, stats = lazy.discriminator_loss(d, real, fake, d_step=step)
        if step % 4 == 0:  # computed every 4th D step, 4 times as heavy
            assert (loss - ns_base).item() == pytest.approx(4 * 0.1 * 25.0, rel=1e-5)
        else:
            assert "r1" not in stats and loss.item() == ns_base.item()


def test_wgan_clips_every_weight_after_a_d_step():
    torch.manual_seed(0)
    d = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Linear(8, 1))
    with torch.no_grad():
        for p in d.parameters():
            p.mul_(10)
    assert max(p.abs().max().item() for p in d.parameters()) > 1
    build_objective(ObjectiveConfig(name="wgan", clip=0.05)).after_d_step(d)
    c = torch.tensor(0.05)  # float32, as the weights
    assert all((p.abs() <= c).all() for p in d.parameters())
    assert any((p.abs() == c).any() for p in d.parameters())
    # the other objectives leave D alone
    before = [p.clone() for p in d.parameters()]
    build_objective(ObjectiveConfig(name="wgan-gp")).after_d_step(d)
    assert all(torch.equal(a, b) for a, b in zip(before, d.parameters()))


def test_r2_penalty_is_on_generated_samples_and_shares_r1_laziness():
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    d = linear_critic([3.0, 4.0])
    base, _ = build_objective(ObjectiveConfig(name="rpgan")).discriminator_loss(d, real, fake)
    both = build_objective(ObjectiveConfig(name="rpgan", r1_gamma=0.2, r2_gamma=0.4, r1_every=2))
    loss, stats = both.discriminator_loss(d, real, fake, d_step=0)
    assert stats["r1"].item() == pytest.approx(25.0, rel=1e-5) and stats["r2"].item() == pytest.approx(25.0, rel=1e-5)
    assert (loss - base).item() == pytest.approx(2 * (0.1 + 0.2) * 25.0, rel=1e-5)
    loss, stats = both.discriminator_loss(d, real, fake, d_step=1)
    assert "r1" not in stats and "r2" not in stats and loss.item() == pytest.approx(base.item())
    # the R2 term's gradient reaches D's weights through the fake inputs
    d.zero_grad()
    only_r2 = build_objective(ObjectiveConfig(name="rpgan", r2_gamma=1.0))
    only_r2.discriminator_loss(d, real, fake)[0].backward()
    with_r2 = d.lin.weight.grad.clone()
    d.zero_grad()
    base.backward()
    assert torch.allclose(with_r2 - d.lin.weight.grad, 0.5 * 2 * torch.tensor([[3.0, 4.0]]), atol=1e-5)
