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

The density filter asks G instead of D. G maps a latent z ~ N(0, I) to x = G(z); by the change of
variables its samples have the density

    log p_G(x) = log N(z) - 1/2 log det(J^T J),   J = dG/dz  (out x latent)

on the surface G draws (the 2D mixtures: the plain density of the points). A continuous G can only reach
separate modes by stretching a thin slice of latent space across the gap between them, so the samples
on those bridges have a tiny density, orders of magnitude below the modes'. Dropping the samples whose
density is below a percentile of G's own densities removes them without asking anything of D, and
without reweighting the modes, whose insides all lie far above the threshold (the precision end of
polarity sampling, Humayun et al. 2022, as a hard threshold).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gankit.checkpoint import CheckpointError, load_checkpoint, resolve
from gankit.generator import LoadedGenerator
from gankit.sampling import generate, load_weights

EPS = 1e-6


@dataclass
class SamplerStats:
    accepted: int
    proposed: int

    @property
    def acceptance(self) -> float:
        return self.accepted / max(self.proposed, 1)


@dataclass
class RejectionStats(SamplerStats):
    gamma: float
    max_logit: float


def _check_settings(percentile: float, burn_in: int) -> None:
    if not 0.0 <= percentile < 100.0:
        raise ValueError(f"percentile must be in [0, 100), got {percentile}")
    if burn_in < 1:
        raise ValueError(f"burn_in must be >= 1, got {burn_in}")


def load_discriminator(path: str | Path, gen: LoadedGenerator) -> nn.Module:
    """The run's D (from the same checkpoint as ``gen``), in eval mode on G's device."""
    from gankit.generator_folder import is_generator_folder
    from gankit.models import build_discriminator

    if str(path).startswith("zoo:") or is_generator_folder(path):
        what = "a zoo model" if str(path).startswith("zoo:") else "an exported generator folder"
        raise ValueError(f"--drs scores samples with the run's discriminator, and {path} is {what}, which holds "
                         "the generator alone; use --drs with a run directory or checkpoint (or --density-filter, "
                         "which needs no D)")
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


def _fill(num: int, labels: torch.Tensor | None,
          propose: Callable[[torch.Tensor | None, int], tuple[torch.Tensor, torch.Tensor]],
          accept: Callable[[torch.Tensor], torch.Tensor], max_proposals: int, advice: str
          ) -> tuple[torch.Tensor, int]:
    """Fill ``num`` output slots with proposals that ``accept`` keeps, slot i with label ``labels[i]``;
    returns the samples and how many were proposed."""
    out: torch.Tensor | None = None
    pending = torch.arange(num)  # the output slots still empty
    proposed = 0
    while len(pending):
        if proposed >= max_proposals:
            raise RuntimeError(f"rejection sampling accepted only {num - len(pending)} of {num} samples in "
                               f"{proposed} proposals; {advice}")
        x, score = propose(None if labels is None else labels[pending], len(pending))
        proposed += len(pending)
        keep = accept(score)
        if out is None:
            out = torch.empty((num, *x.shape[1:]), dtype=x.dtype)
        out[pending[keep]] = x[keep]
        pending = pending[~keep]
    assert out is not None
    return out, proposed


def rejection_sample(gen: LoadedGenerator, d: nn.Module, num: int, seed: int = 0, batch_size: int = 256,
                     labels: torch.Tensor | None = None, truncation: float | None = None, *,
                     percentile: float = 80.0, gamma: float | None = None, burn_in: int = 5000,
                     max_proposals: int | None = None) -> tuple[torch.Tensor, RejectionStats]:
    """``num`` samples of ``gen`` kept by DRS; the i-th keeps the label ``labels[i]`` (conditional G).

    ``gamma`` None: the ``percentile``-th percentile of the burn-in set's scores (higher rejects more);
    ``gamma=0`` is exact rejection sampling when the logit is the true log density ratio. The same
    seed gives the same samples."""
    _check_settings(percentile, burn_in)
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

    def accept(logits: torch.Tensor) -> torch.Tensor:
        nonlocal max_logit
        max_logit = max(max_logit, float(logits.max()))
        accept_p = torch.sigmoid(_scores(logits, max_logit) - gamma)
        return torch.rand(len(logits), generator=rng, dtype=torch.float64) < accept_p

    out, proposed = _fill(num, labels, propose, accept, max_proposals, "lower the percentile")
    return out, RejectionStats(num, proposed, gamma, max_logit)


def log_density(g: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None,
                batch_size: int = 256) -> torch.Tensor:
    """log p_G(G(z)) (N,) up to a constant: log N(z) - 1/2 log det(J^T J), J = dG/dz by forward-mode
    autodiff (one pass per latent coordinate). G must be deterministic and draw at least as many output
    values as it has latent coordinates (else J^T J is singular and the density undefined). Where a
    saturated output (tanh) makes J singular the density is +inf: such samples rank first."""
    from torch.func import jacfwd, vmap

    latent = z.shape[1]

    def one(zi: torch.Tensor, yi: torch.Tensor | None) -> torch.Tensor:
        return g(zi[None], None if yi is None else yi[None]).reshape(-1)

    out = []
    with torch.no_grad():
        for i in range(0, len(z), batch_size):
            zb = z[i:i + batch_size]
            yb = None if labels is None else labels[i:i + batch_size].to(z.device)
            try:
                jac = vmap(jacfwd(one), in_dims=(0, None if yb is None else 0))(zb, yb)  # (B, out, latent)
            except RuntimeError as err:
                if "random" in str(err).lower():
                    raise ValueError("the density filter needs a deterministic generator; this one draws "
                                     "random noise in its forward pass (e.g. StyleGAN's noise inputs)") from err
                raise
            if jac.shape[1] < latent:
                raise ValueError(f"the density filter needs at least as many output values as latent "
                                 f"coordinates; this G maps {latent} to {jac.shape[1]}")
            gram = jac.transpose(1, 2).double() @ jac.double()
            logdet = torch.linalg.slogdet(gram).logabsdet
            out.append((-0.5 * zb.double().square().sum(1) - 0.5 * logdet).cpu())
    return torch.cat(out)


@dataclass
class DensityStats(SamplerStats):
    threshold: float  # log density below which samples were dropped


@dataclass
class DensityFilter:
    """Keep the samples where G's own density is above its ``percentile``-th percentile (estimated on a
    burn-in set); :meth:`sample` draws like ``LoadedGenerator.sample``, stats in ``stats``."""

    percentile: float = 5.0
    burn_in: int = 5000
    stats: DensityStats | None = None

    def sample(self, gen: LoadedGenerator, num: int, seed: int = 0, batch_size: int = 256,
               labels: torch.Tensor | None = None, truncation: float | None = None) -> torch.Tensor:
        out, self.stats = density_sample(gen, num, seed, batch_size, labels, truncation,
                                         percentile=self.percentile, burn_in=self.burn_in)
        return out


def density_sample(gen: LoadedGenerator, num: int, seed: int = 0, batch_size: int = 256,
                   labels: torch.Tensor | None = None, truncation: float | None = None, *,
                   percentile: float = 5.0, burn_in: int = 5000) -> tuple[torch.Tensor, DensityStats]:
    """``num`` samples of ``gen`` whose log density under G is at least the ``percentile``-th percentile
    of a burn-in set's; slot i keeps the label ``labels[i]``. The same seed gives the same samples."""
    if truncation is not None:
        raise ValueError("the density filter and truncation both trade diversity for quality; use one")
    _check_settings(percentile, burn_in)
    device = next(gen.net.parameters()).device
    rng = torch.Generator().manual_seed(seed)

    def latents(n: int) -> torch.Tensor:
        return torch.randn(n, gen.latent_dim, generator=rng).to(device)

    def propose(want: torch.Tensor | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = latents(n)
        return generate(gen.net, z, batch_size, want), log_density(gen.net, z, want, batch_size)

    burn = log_density(gen.net, latents(burn_in), gen.labels(burn_in), batch_size)  # no images needed
    if burn.isnan().any():
        raise ValueError("G's log density is NaN on some samples; the density filter cannot rank them")
    threshold = float(np.percentile(burn.numpy(), percentile))
    out, proposed = _fill(num, labels, propose, lambda logp: logp >= threshold, max(100 * num, burn_in),
                          "lower the percentile")
    return out, DensityStats(num, proposed, threshold)
