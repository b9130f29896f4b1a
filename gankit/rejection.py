"""Discriminator rejection sampling (DRS, Azadi et al. 2019): keep G's samples with a probability that
grows with D's logit, so the samples D finds least real (the bridges between modes, the broken images)
are dropped.

Why it works: for the logistic GAN losses D's logit estimates log p_data(x) / p_g(x) up to a constant,
so accepting x with probability p_data / (M p_g) turns G's samples into samples of the data
distribution (classic rejection sampling with M = the largest ratio). DRS makes that usable: M is
estimated from a burn-in set and updated when a larger logit shows up, and the acceptance is

    sigmoid(F(x)),  F(x) = l - l_M - log(1 - exp(l - l_M - eps)) - gamma

with ``l`` the logit and ``l_M`` its maximum. With ``gamma = 0`` the acceptance is exactly
``exp(l - l_M)``, plain rejection sampling; the paper's ``gamma``, a percentile of the burn-in set's F
(the 80th), puts the sigmoid's midpoint among G's actual scores, so the acceptance rate depends on the
percentile rather than on how far the logits spread. The D saved with a run is the one trained
against the raw G; its logit is still a realness score for the EMA G's samples, which ``gankit sample``
uses by default. Wasserstein and hinge critics give scores, not log ratios: for those objectives DRS is
a heuristic filter.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gankit.checkpoint import CheckpointError, load_checkpoint, resolve
from gankit.sampling import LoadedGenerator, generate, load_weights

EPS = 1e-6


@dataclass
class RejectionStats:
    accepted: int
    proposed: int
    gamma: float
    max_logit: float

    @property
    def acceptance(self) -> float:
        return self.accepted / max(self.proposed, 1)


def load_discriminator(path: str | Path, gen: LoadedGenerator) -> nn.Module:
    """The run's D (from the same checkpoint as ``gen``), in eval mode on G's device."""
    from gankit.models import build_discriminator

    cfg = gen.config
    if cfg.model.pack > 1:
        raise ValueError(f"rejection sampling scores one sample at a time; this run's D judges packs of "
                         f"{cfg.model.pack} (model.pack)")
    state, _ = load_checkpoint(resolve(path))
    if state.get("d") is None:
        raise CheckpointError(f"{path}: the checkpoint holds no discriminator")
    d = build_discriminator(cfg.model.discriminator, gen.data_shape, gen.num_classes)
    load_weights(d, state["d"], "discriminator")
    return d.to(next(gen.net.parameters()).device).eval()


def calibrate(d: nn.Module, gen: LoadedGenerator, steps: int, *, lr: float = 2e-4,
              batch_size: int | None = None, seed: int = 0) -> list[float]:
    """Train ``d`` further, alone, with the logistic loss: real data (the run's dataset) against samples
    of ``gen``, which stays fixed. At the end of a GAN run D's logit tracks a moving G (the raw one, not
    the EMA), and for the hinge, Wasserstein or relativistic losses it is no log ratio at all; this is
    the DRS paper's fix, after which the logit estimates log p_data / p_gen for the G being sampled.
    Returns the loss every step; leaves ``d`` in eval mode."""
    from gankit.data import build_dataset
    from gankit.data.stream import BatchStream

    if steps < 1:
        raise ValueError(f"calibration steps must be >= 1, got {steps}")
    cfg = gen.config
    device = next(gen.net.parameters()).device
    batch_size = batch_size or cfg.train.batch_size
    stream = BatchStream(build_dataset(cfg.data), batch_size, seed, device)
    rng = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999))
    d.train()
    losses = []
    for _ in range(steps):
        real, y = stream.next()
        y = y if gen.num_classes is not None else None
        z = torch.randn(batch_size, gen.latent_dim, generator=rng).to(device)
        fake = generate(gen.net, z, batch_size, y).to(device)
        loss = F.softplus(-d(real, y)).mean() + F.softplus(d(fake, y)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    d.eval()
    return losses


def _scores(logits: torch.Tensor, max_logit: float) -> torch.Tensor:
    """F(x) without gamma; float64 so that exp(l - l_M) near 1 keeps its precision."""
    delta = logits.double() - max_logit - EPS
    return delta - torch.log1p(-torch.exp(delta))


@torch.no_grad()
def _logits(gen: LoadedGenerator, d: nn.Module, z: torch.Tensor, labels: torch.Tensor | None,
            batch_size: int, truncation: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    x = generate(gen.net, z, batch_size, labels, truncation=truncation)
    device = z.device
    out = []
    for i in range(0, len(x), batch_size):
        y = None if labels is None else labels[i:i + batch_size].to(device)
        out.append(d(x[i:i + batch_size].to(device), y).float().reshape(-1).cpu())
    return x, torch.cat(out)


@dataclass
class Rejection:
    """DRS settings with the run's D; :meth:`sample` draws like ``LoadedGenerator.sample`` and keeps the
    last call's :class:`RejectionStats` in ``stats``."""

    d: nn.Module
    percentile: float = 80.0
    gamma: float | None = None
    burn_in: int = 5000
    stats: RejectionStats | None = None

    def sample(self, gen: LoadedGenerator, num: int, seed: int = 0, batch_size: int = 256,
               labels: torch.Tensor | None = None, truncation: float | None = None) -> torch.Tensor:
        out, self.stats = rejection_sample(gen, self.d, num, seed, batch_size, labels, truncation,
                                           percentile=self.percentile, gamma=self.gamma,
                                           burn_in=self.burn_in)
        return out


def rejection_sample(gen: LoadedGenerator, d: nn.Module, num: int, seed: int = 0, batch_size: int = 256,
                     labels: torch.Tensor | None = None, truncation: float | None = None, *,
                     percentile: float = 80.0, gamma: float | None = None, burn_in: int = 5000,
                     max_proposals: int | None = None) -> tuple[torch.Tensor, RejectionStats]:
    """``num`` samples of ``gen`` kept by DRS; the i-th keeps the label ``labels[i]`` (conditional G).

    ``gamma`` None: the ``percentile``-th percentile of the burn-in set's scores (higher rejects more);
    ``gamma=0`` is exact rejection sampling when the logit is the true log density ratio. The same
    seed gives the same samples."""
    if not 0.0 <= percentile < 100.0:
        raise ValueError(f"percentile must be in [0, 100), got {percentile}")
    if burn_in < 1:
        raise ValueError(f"burn_in must be >= 1, got {burn_in}")
    max_proposals = max_proposals or max(100 * num, burn_in)
    device = next(gen.net.parameters()).device
    rng = torch.Generator().manual_seed(seed)

    def propose(want: torch.Tensor | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(n, gen.latent_dim, generator=rng).to(device)
        return _logits(gen, d, z, want, batch_size, truncation)

    _, burn = propose(gen.labels(burn_in), burn_in)  # labels: None for an unconditional G
    if not torch.isfinite(burn).all():
        raise ValueError("the discriminator gives non-finite logits on G's samples; rejection sampling "
                         "needs a finite score")
    max_logit = float(burn.max())
    if gamma is None:
        gamma = float(np.percentile(_scores(burn, max_logit).numpy(), percentile))

    out: torch.Tensor | None = None
    pending = torch.arange(num)  # the output slots still empty
    proposed = 0
    while len(pending):
        if proposed >= max_proposals:
            raise RuntimeError(f"rejection sampling accepted only {num - len(pending)} of {num} samples in "
                               f"{proposed} proposals; lower the percentile")
        want = None if labels is None else labels[pending]
        x, logits = propose(want, len(pending))
        proposed += len(pending)
        max_logit = max(max_logit, float(logits.max()))
        accept_p = torch.sigmoid(_scores(logits, max_logit) - gamma)
        keep = torch.rand(len(pending), generator=rng, dtype=torch.float64) < accept_p
        if out is None:
            out = torch.empty((num, *x.shape[1:]), dtype=x.dtype)
        out[pending[keep]] = x[keep]
        pending = pending[~keep]
    assert out is not None
    return out, RejectionStats(num, proposed, gamma, max_logit)
