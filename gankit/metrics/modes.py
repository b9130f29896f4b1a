"""Mode-collapse metrics with the protocols of the literature: the 2D mixtures of PacGAN / VEEGAN
(``ring``, ``grid``) and stacked MNIST (1000 modes, Metz et al. / VEEGAN / PacGAN).

Both compare a histogram of samples over the known modes with the true, uniform mode distribution by
the reverse KL, KL(p_samples || uniform) = sum_i p_i log(K p_i) in nats: 0 for a perfectly balanced
histogram, log K when every counted sample falls in one mode. In this direction a mode without samples
contributes 0 (the 0 log 0 = 0 convention) and the uniform target is never 0, so no epsilon is added
(one would bias the value: smoothed counts make a histogram look more uniform than it is).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from gankit.config import DataConfig
from gankit.data.stacked import mode_of, source_digits, stack_digits
from gankit.data.toy2d import MIXTURES
from gankit.metrics.classes import kl_to
from gankit.metrics.errors import EvalError
from gankit.metrics.features import get_extractor

HIGH_QUALITY_STDS = 3.0  # PacGAN / VEEGAN: a sample is high quality within 3 std of its nearest mode
STACKED_MODES = 1000
CLASSIFY_BATCH = 512  # digits per forward pass: measured fastest of 128 to 4096 on a 2-core CPU


def kl_to_uniform(counts: np.ndarray) -> float:
    """KL(p || uniform over len(counts) modes) in nats of the histogram ``counts``; NaN when it is empty
    (no sample counted: the distribution p is undefined, and no number would describe it honestly)."""
    total = counts.sum()
    if total == 0:
        return math.nan
    k = len(counts)
    return kl_to(counts / total, np.full(k, 1.0 / k))


def pacgan_modes(points: torch.Tensor, dataset: str) -> dict[str, float | int]:
    """The PacGAN protocol on 2D samples (N, 2) of the mixture ``dataset`` (``ring`` or ``grid``, mode
    centres and std from gankit.data.toy2d).

    Each sample is assigned to its nearest mode centre; it is *high quality* when that distance is below
    3 std (strictly, as in PacGAN's code). ``modes``: modes that are the nearest mode of at least one
    high-quality sample. ``high_quality``: the share of high-quality samples. ``reverse_kl``:
    KL(p || uniform) where p is the histogram of the high-quality samples over the modes (low-quality
    samples belong to no mode); NaN when no sample is high quality. ``spread``: the high-quality
    samples' RMS distance per coordinate from their mode centre, in units of the mode's std: ~0.97 for
    real data (the 3-std cut trims the tails), well below that when G draws each mode too narrowly,
    which the other three numbers do not see; NaN when no sample is high quality.
    """
    if dataset not in MIXTURES:
        raise EvalError(f"metric 'modes2d' knows the modes of {' and '.join(MIXTURES)}, not of {dataset!r}")
    if points.dim() != 2 or points.shape[1] != 2 or len(points) == 0:
        raise EvalError(f"metric 'modes2d' needs 2D points (N, 2), got {tuple(points.shape)}")
    modes_fn, std = MIXTURES[dataset]
    centres = modes_fn().double()
    # non-finite points (a diverged G) have a NaN distance and so are never high quality
    dist, nearest = torch.cdist(points.double(), centres).min(1)
    good = dist < HIGH_QUALITY_STDS * std
    counts = torch.bincount(nearest[good], minlength=len(centres)).numpy()
    spread = dist[good].square().mean().div(2).sqrt().item() / std if good.any() else math.nan
    return {"modes": int((counts > 0).sum()), "num_modes": len(centres),
            "high_quality": float(good.double().mean()), "reverse_kl": kl_to_uniform(counts),
            "spread": spread, "num": len(points)}


def _check_stacked(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != (3, 28, 28):
        raise EvalError(f"metric 'stacked' needs uint8 stacked-MNIST images (N, 3, 28, 28), got "
                        f"{images.dtype} {tuple(images.shape)}")
    if len(images) == 0:
        raise EvalError("metric 'stacked' got no samples")


@torch.inference_mode()
def classify_channels(images: torch.Tensor, batch_size: int = CLASSIFY_BATCH) -> torch.Tensor:
    """The digit (N, 3) that gankit's shipped classifier (``mnist-cnn``, 98.6 % accurate on held-out
    digits) reads in each channel of uint8 images (N, 3, 28, 28)."""
    _check_stacked(images)
    net = get_extractor("mnist-cnn").net.eval()
    digits = images.reshape(-1, 1, 28, 28)  # every channel is one grayscale digit
    preds = [net(chunk.float().div_(255)).argmax(1) for chunk in digits.split(batch_size)]
    return torch.cat(preds).view(-1, 3)


def stacked_mode_stats(modes: torch.Tensor) -> dict[str, float | int]:
    """``modes``: distinct values among the samples' modes (N,) (of 1000); ``kl``: KL(p || uniform over
    the 1000 modes), p the samples' mode histogram.

    ``kl`` splits exactly into ``digit_kl``, the sum over R, G and B of each channel's digit histogram's
    KL to uniform over 10 (unequal digit frequencies), plus ``dependence``, the total correlation of the
    three digits (KL of p to the product of its channel marginals: triples drawn together more or less
    often than their digits' frequencies predict). Both are plug-in estimates, so a finite N shows some
    dependence even for independent channels: about (999 - 27) / (2 N) nats."""
    counts = torch.bincount(modes, minlength=STACKED_MODES).numpy()
    kl = kl_to_uniform(counts)
    cube = counts.reshape(10, 10, 10)  # axes R, G, B: mode 100 r + 10 g + b
    digit_kl = sum(kl_to_uniform(cube.sum(axis=tuple(a for a in range(3) if a != c))) for c in range(3))
    return {"modes": int((counts > 0).sum()), "num_modes": STACKED_MODES, "kl": kl, "digit_kl": digit_kl,
            "dependence": kl - digit_kl, "num": len(modes)}


def stacked_mnist_modes(images: torch.Tensor) -> dict[str, float | int]:
    """Stacked MNIST (VEEGAN / PacGAN protocol) on uint8 samples (N, 3, 28, 28): each channel's digit
    read by the classifier, a sample's mode 100 r + 10 g + b; see :func:`stacked_mode_stats`."""
    return stacked_mode_stats(mode_of(classify_channels(images)))


def stacked_mnist_floor(num: int = 26_000, seed: int = 0, *, digits: str = "mnist10k",
                        root: str = "data") -> dict[str, float | int]:
    """:func:`stacked_mnist_modes` of ``num`` real stacked-MNIST samples (drawn with ``seed`` from the
    ``digits`` the dataset stacks): what a perfect generator scores at that N, with the classifier's
    errors and the sampling noise of a finite N included. Report it beside a model's numbers."""
    if num < 1:
        raise EvalError(f"the number of samples must be >= 1, got {num}")
    images, labels = source_digits(DataConfig(name="stacked-mnist", stacked_digits=digits, root=root))
    return stacked_mnist_modes(stack_digits(images, labels, num, seed)[0])
