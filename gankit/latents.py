"""Latents and what G draws from them: seeded latents, class labels, both truncation tricks, batched
eval-mode generation and the checks on what is drawn. Apart from sampling.py's files and grids so that
:class:`gankit.generator.LoadedGenerator` can draw without importing them; sampling.py re-exports all."""
from __future__ import annotations

import torch
import torch.nn as nn

from gankit.data.source import memory_shortfall
from gankit.models.capabilities import StyleBased


def check_memory(num: int, floats_each: int, what: str) -> None:
    """Refuse ``num`` items of ``floats_each`` float32 values when they cannot fit in this machine's memory."""
    short = memory_shortfall(num * floats_each * 4)
    if short:
        raise ValueError(f"{num:,} {what} {short}; ask for fewer")


def finite_samples(samples: torch.Tensor) -> torch.Tensor:
    """``samples`` unchanged when finite; a generator producing NaN or Inf must not write them as images."""
    bad = int((~torch.isfinite(samples.flatten(1))).any(1).sum()) if samples.numel() else 0
    if bad:
        raise ValueError(f"the generator produced NaN or Inf in {bad} of {len(samples)} samples (its weights "
                         "are broken); nothing written")
    return samples


def latents(n: int, latent_dim: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` standard normal latents that depend only on (seed, n, latent_dim), not on the device."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, latent_dim, generator=gen).to(device)


def class_labels(n: int, num_classes: int | None, per_row: int = 1,
                 device: torch.device | str = "cpu") -> torch.Tensor | None:
    """Labels for ``n`` samples of a conditional G: class ``(i // per_row) % num_classes`` for sample i,
    so a grid of ``per_row`` columns shows one class per row, and ``per_row=1`` cycles through the
    classes (balanced). None for an unconditional G."""
    if num_classes is None:
        return None
    return (torch.arange(n, device=device) // per_row) % num_classes


@torch.no_grad()
def generate(g: nn.Module, z: torch.Tensor, batch_size: int = 256, labels: torch.Tensor | None = None, *,
             truncation: float | None = None) -> torch.Tensor:
    """Run G in eval mode over ``z`` (with class ``labels`` for a conditional G) in batches; returns
    samples in the model's range on the CPU. ``truncation``: see :func:`truncated`."""
    was_training = g.training
    g.eval()
    ys = [None] * len(z.split(batch_size)) if labels is None else labels.to(z.device).split(batch_size)
    try:
        return torch.cat([truncated(g, chunk, truncation, y).float().cpu()
                          for chunk, y in zip(z.split(batch_size), ys)])
    finally:
        g.train(was_training)


def truncated(g: nn.Module, z: torch.Tensor, truncation: float | None, y: torch.Tensor | None = None
              ) -> torch.Tensor:
    """G(z, y) with the truncation trick. Generators that map z to a style w (:class:`StyleBased`:
    StyleGAN) use w_avg + psi (w - w_avg) with psi = ``truncation``; the others get z from a normal
    truncated to |z_i| < ``truncation`` (:func:`truncate_latents`, BigGAN's trick). In both, 0 gives
    the same image for every z (per class), and None leaves G alone."""
    if truncation is None:
        return g(z, y)
    if truncation < 0:
        raise ValueError(f"truncation must be >= 0, got {truncation}")
    if isinstance(g, StyleBased):
        check_psi(truncation)
        return g(z, y, psi=truncation)
    return g(truncate_latents(z, truncation), y)


def check_psi(truncation: float | None) -> None:
    """StyleGAN's truncation psi must be in [0, 1]: beyond 1 it extrapolates away from the mean style, off the
    learned distribution."""
    if truncation is not None and not 0 <= truncation <= 1:
        raise ValueError(f"--truncation: StyleGAN's psi must be in [0, 1] (1 = off), got {truncation:g}")


def truncate_latents(z: torch.Tensor, threshold: float) -> torch.Tensor:
    """Standard normal ``z`` mapped to a normal truncated to (-threshold, threshold).

    Each coordinate goes through the normal CDF into the truncated normal's quantiles: the same
    distribution as redrawing every |z_i| >= threshold, without a loop and monotone in z, so one seed
    gives related images at every threshold, and threshold 0 gives z = 0.
    """
    if threshold < 0:
        raise ValueError(f"truncation threshold must be >= 0, got {threshold}")
    if threshold == 0:
        return torch.zeros_like(z)
    lo = torch.special.ndtr(torch.tensor(-float(threshold), dtype=torch.float64))
    u = torch.special.ndtr(z.double())
    return torch.special.ndtri(lo + u * (1 - 2 * lo)).to(z.dtype)
