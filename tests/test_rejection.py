"""Rejection samplers (DRS and the density filter): exact on closed forms, reproducible, and wired into
`gankit sample`."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from gankit.cli import main
from gankit.config import from_dict
from gankit.rejection import calibrate, density_sample, load_discriminator, log_density, rejection_sample
from gankit.sampling import LoadedGenerator, load_generator
from gankit.train import train
from tests.conftest import TINY_RING, make_cfg


class Scale(nn.Module):
    """G(z) = 2 z: samples from N(0, 4 I)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2, bias=False)
        nn.init.eye_(self.lin.weight)
        self.lin.weight.data *= 2

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.lin(z)


class TrueRatio(nn.Module):
    """The optimal logit log N(x; 0, I) / N(x; 0, 4 I) = -3/8 |x|^2 + log 4."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return -0.375 * x.square().sum(1) + math.log(4.0)


def _gaussian_gen() -> LoadedGenerator:
    cfg = from_dict(make_cfg(TINY_RING, "model.latent_dim=2"))
    return LoadedGenerator(Scale().eval(), cfg, (2,), step=0, is_ema=False)


def test_gamma_zero_is_exact_rejection_sampling():
    # with the true density ratio as the logit, DRS turns N(0, 4I) into N(0, I) and keeps 1/M = 1/4
    x, stats = rejection_sample(_gaussian_gen(), TrueRatio(), 8000, seed=1, gamma=0.0, burn_in=20000)
    assert x.shape == (8000, 2)
    assert x.std(0).sub(1.0).abs().max() < 0.04
    assert x.mean(0).abs().max() < 0.04
    assert 0.22 < stats.acceptance < 0.28
    assert stats.max_logit == pytest.approx(math.log(4.0), abs=0.01)


def test_percentile_rejects_more_as_it_grows_and_seed_is_reproducible():
    gen, d = _gaussian_gen(), TrueRatio()
    rates = []
    for pct in (10.0, 50.0, 90.0):
        _, st = rejection_sample(gen, d, 2000, seed=0, percentile=pct)
        rates.append(st.acceptance)
    assert rates[0] > rates[1] > rates[2]
    a, _ = rejection_sample(gen, d, 500, seed=3)
    b, _ = rejection_sample(gen, d, 500, seed=3)
    c, _ = rejection_sample(gen, d, 500, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_settings_are_refused():
    gen, d = _gaussian_gen(), TrueRatio()
    with pytest.raises(ValueError, match="percentile"):
        rejection_sample(gen, d, 10, percentile=100.0)

    class Broken(nn.Module):
        def forward(self, x, y=None):
            return torch.full((x.shape[0],), float("nan"))

    with pytest.raises(ValueError, match="non-finite"):
        rejection_sample(gen, Broken(), 10)
    # a D that rejects nearly everything stops with an error instead of looping for ever
    with pytest.raises(RuntimeError, match="lower the percentile"):
        rejection_sample(gen, d, 100, gamma=40.0, burn_in=100, max_proposals=1000)


def test_cli_sample_drs_on_a_trained_ring(tmp_path, capsys):
    run = tmp_path / "ring"
    train(make_cfg(TINY_RING, "train.steps=60"), run)
    out = tmp_path / "drs.npz"
    assert main(["sample", str(run), "--num", "300", "--drs", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rejection sampling kept 300 of" in printed
    points = np.load(out)["points"]
    assert points.shape == (300, 2) and np.isfinite(points).all()
    # the kept samples score higher under D than plain samples do
    gen = load_generator(run)
    d = load_discriminator(run, gen)
    plain = gen.sample(300, seed=0)
    with torch.no_grad():
        assert d(torch.from_numpy(points)).mean() > d(plain).mean()
    assert main(["sample", str(run), "--num", "300", "--drs", "50", "--out", str(tmp_path / "b.npz")]) == 0
    assert main(["sample", str(run), "--num", "300", "--drs", "50", "--out", str(tmp_path / "c.npz")]) == 0
    assert np.array_equal(np.load(tmp_path / "b.npz")["points"], np.load(tmp_path / "c.npz")["points"])
    with pytest.raises(SystemExit):
        main(["sample", str(run), "--drs", "100", "--out", str(tmp_path / "d.npz")])


def test_packed_discriminator_is_refused(tmp_path):
    run = tmp_path / "packed"
    train(make_cfg(TINY_RING, "train.steps=2", "model.pack=2"), run)
    with pytest.raises(ValueError, match="packs of 2"):
        load_discriminator(run, load_generator(run))


def test_conditional_labels_are_kept(tmp_path, tiny_cfg):
    run = tmp_path / "cond"
    train(make_cfg(tiny_cfg, "train.steps=2", "model.conditional=true"), run)
    gen = load_generator(run)
    d = load_discriminator(run, gen)
    labels = torch.tensor([3, 3, 7, 0, 9, 1])
    x, st = rejection_sample(gen, d, 6, labels=labels, burn_in=50)
    assert x.shape == (6, *gen.data_shape) and st.accepted == 6


def test_calibration_teaches_d_the_ratio_and_drs_follows_it():
    # G is a broad Gaussian, the data the unit ring: a fresh D calibrated against this fixed G learns
    # where the ring is, and the samples DRS keeps lie much closer to it than G's own
    from gankit.models import build_discriminator

    gen = _gaussian_gen()
    torch.manual_seed(0)
    d = build_discriminator(gen.config.model.discriminator, (2,), None)
    losses = calibrate(d, gen, 300, lr=2e-3, seed=0)
    assert len(losses) == 300 and not d.training
    assert np.mean(losses[-30:]) < np.mean(losses[:30]) - 0.2
    kept, stats = rejection_sample(gen, d, 1000, seed=0, gamma=0.0)
    plain = gen.sample(1000, seed=0)

    def off_ring(x: torch.Tensor) -> float:
        return float((x.norm(dim=1) - 1.0).abs().mean())

    assert off_ring(kept) < 0.5 * off_ring(plain)
    assert stats.acceptance < 0.5


def test_cli_calibrate_needs_drs_and_reports(tmp_path, capsys):
    run = tmp_path / "ring"
    train(make_cfg(TINY_RING, "train.steps=20"), run)
    assert main(["sample", str(run), "--num", "50", "--drs-calibrate", "10", "--out", str(tmp_path / "a.npz")]) == 2
    assert "add --drs" in capsys.readouterr().err
    assert main(["sample", str(run), "--num", "50", "--drs", "--drs-calibrate", "20",
                 "--out", str(tmp_path / "b.npz")]) == 0
    assert "calibrated D for 20 steps" in capsys.readouterr().out
    assert np.load(tmp_path / "b.npz")["points"].shape == (50, 2)


# ---------------------------------------------------------------------------------------------
# The density filter


class Bridged(nn.Module):
    """Two modes at x0 = -1 and +1 joined by a bridge: G(z) = (tanh(20 z0) + z0 / 100, z1 / 20). 5.9 % of the
    samples (|z0| < atanh(0.9) / 20) lie on the bridge, |x0| < 0.9."""

    def __init__(self) -> None:
        super().__init__()
        self.steep = nn.Parameter(torch.tensor(20.0))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([torch.tanh(self.steep * z[:, 0]) + 0.01 * z[:, 0], 0.05 * z[:, 1]], 1)


def _gen(net: nn.Module, latent_dim: int = 2) -> LoadedGenerator:
    cfg = from_dict(make_cfg(TINY_RING, f"model.latent_dim={latent_dim}"))
    return LoadedGenerator(net.eval(), cfg, (2,), step=0, is_ema=False)


def test_log_density_is_the_change_of_variables_of_a_linear_generator():
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    # square: log N(z) - log |det A| (up to the constant -log 2 pi that the filter does not need)
    logp = log_density(Scale(), z)
    assert torch.allclose(logp, -0.5 * z.double().square().sum(1) - math.log(4.0))
    # 2 -> 3 values: the density on G's plane, 1/2 log det(A^T A)
    lin = nn.Linear(2, 3, bias=True)
    a = lin.weight.detach().double()
    expected = -0.5 * z.double().square().sum(1) - 0.5 * torch.logdet(a.T @ a)
    assert torch.allclose(log_density(lambda zz, y=None: lin(zz), z, batch_size=10), expected)


def test_density_filter_drops_the_bridge_and_keeps_the_modes_balanced():
    gen = _gen(Bridged())
    plain = gen.sample(20_000, seed=0)
    assert 0.05 < (plain[:, 0].abs() < 0.9).double().mean() < 0.07
    kept, stats = density_sample(gen, 20_000, seed=0, percentile=10.0)
    assert kept.shape == (20_000, 2)
    assert (kept[:, 0].abs() < 0.9).double().mean() < 0.002  # the bridge is gone ...
    assert abs((kept[:, 0] > 0).double().mean() - 0.5) < 0.01  # ... and both modes keep their half
    assert 0.87 < stats.acceptance < 0.93
    a, _ = density_sample(gen, 300, seed=3, percentile=5.0)
    b, _ = density_sample(gen, 300, seed=3, percentile=5.0)
    c, _ = density_sample(gen, 300, seed=4, percentile=5.0)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_density_filter_refuses_what_has_no_density():
    class Noisy(nn.Module):
        def __init__(self, latent_dim: int = 2, noise: bool = True) -> None:
            super().__init__()
            self.lin, self.noise = nn.Linear(latent_dim, 2), noise

        def forward(self, z, y=None):
            x = self.lin(z)
            return x + torch.randn_like(x) if self.noise else x

    with pytest.raises(ValueError, match="deterministic"):
        density_sample(_gen(Noisy()), 10, burn_in=10)
    with pytest.raises(ValueError, match="at least as many output values"):
        density_sample(_gen(Noisy(3, noise=False), latent_dim=3), 10, burn_in=10)
    with pytest.raises(ValueError, match="percentile"):
        density_sample(_gen(Bridged()), 10, percentile=100.0)
    with pytest.raises(ValueError, match="truncation"):
        density_sample(_gen(Bridged()), 10, truncation=0.5)


def test_cli_density_filter_on_a_trained_ring_and_conditional_labels(tmp_path, capsys, tiny_cfg):
    run = tmp_path / "ring"
    train(make_cfg(TINY_RING, "train.steps=40", "model.latent_dim=2"), run)
    out = tmp_path / "dens.npz"
    assert main(["sample", str(run), "--num", "200", "--density-filter", "--out", str(out)]) == 0
    assert "rejection sampling kept 200 of" in capsys.readouterr().out
    assert np.load(out)["points"].shape == (200, 2)
    assert main(["sample", str(run), "--num", "20", "--density-filter", "--drs",
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert "choose one" in capsys.readouterr().err
    # a conditional G: the slots keep their labels, the density is G's given the label
    cond = tmp_path / "cond"
    train(make_cfg(TINY_RING, "train.steps=2", "model.latent_dim=2", "model.conditional=true"), cond)
    gen = load_generator(cond)
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    x, st = density_sample(gen, 6, labels=labels, burn_in=50)
    assert x.shape == (6, 2) and st.accepted == 6
