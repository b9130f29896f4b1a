"""Discriminator rejection sampling: exact on a closed form, reproducible, and wired into `gankit sample`."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from gankit.cli import main
from gankit.config import from_dict
from gankit.rejection import calibrate, load_discriminator, rejection_sample
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
