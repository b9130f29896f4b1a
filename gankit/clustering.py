"""Self-conditioning (Liu et al. 2020, "Diverse Image Generation via Self-Conditioned GANs").

G and D are conditional on k-means clusters of the discriminator's features of the training images
instead of class labels: D has to tell every cluster's fakes from its reals, so G cannot leave a
cluster out, and samples draw the clusters in proportion to their share of the data, so G cannot
over- or under-produce one either. Clusters are recomputed every ``model.recluster_every`` steps with
the improved D; the new clusters take the ids of the old ones they overlap most, so G's embedding of
a cluster keeps its meaning.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from gankit.data.source import TensorSource
from gankit.models.conditional import Projection

KMEANS_SAMPLES = 10_000  # images whose features k-means fits; every image is then assigned
KMEANS_ITERS = 30
# k-means runs on the top principal components of D's features (thousands of dimensions): k-means++
# seeding is one pass over all fitted features per centroid, which at k = 1000 took 100 s of a busy
# core at full width (~2 s in 128 components, which keep the directions the clusters differ along)
KMEANS_DIMS = 128


@dataclass
class Clusters:
    """Cluster ids of every training image (N,) and each cluster's share of them (k,), the sampling prior."""

    labels: torch.Tensor
    prior: torch.Tensor

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"labels": self.labels, "prior": self.prior}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], device: torch.device) -> "Clusters":
        return cls(state["labels"].to(device=device, dtype=torch.long), state["prior"].float())


def prior_labels(n: int, prior: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` cluster ids whose counts follow ``prior`` closely for every prefix, without randomness:
    sample i takes the quantile frac(i * golden ratio) of the prior (a low-discrepancy sequence), so the
    same n always gives the same labels and neighbouring samples differ in cluster."""
    u = torch.frac((torch.arange(n, dtype=torch.float64) + 0.5) * ((math.sqrt(5.0) - 1.0) / 2.0))
    cdf = torch.cumsum(prior.double().cpu(), 0)
    cdf = cdf / cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=len(prior) - 1).to(device)


def prior_rows(n: int, prior: torch.Tensor, per_row: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Cluster ids for a grid of ``n`` samples, ``per_row`` to a row: one cluster per row, the rows' clusters
    following ``prior`` as :func:`prior_labels` does, so a grid shows many clusters and not only the first."""
    rows = prior_labels(-(-n // per_row), prior, device)
    return rows.repeat_interleave(per_row)[:n]


@torch.no_grad()
def discriminator_features(d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The features D's projection term reads (its last hidden layer), unit-normalised, for images ``x``.

    D runs in eval mode (BatchNorm on its running statistics) with dummy labels; the features do not
    depend on the labels, which only enter the projection itself."""
    projections = [m for m in d.modules() if isinstance(m, Projection)]
    if len(projections) != 1:
        raise ValueError("self-conditioning reads D's features at its projection term: use a discriminator "
                         "with projection conditioning (the default of dcgan, resnet, biggan and mlp)")
    captured: list[torch.Tensor] = []
    hook = projections[0].register_forward_pre_hook(lambda _m, args: captured.append(args[0].flatten(1)))
    was_training = d.training
    d.eval()
    try:
        d(x, torch.zeros(len(x), dtype=torch.long, device=x.device))
    finally:
        hook.remove()
        d.train(was_training)
    return nn.functional.normalize(captured[0].float(), dim=1)


def nearest(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid of every row of ``x``: argmin |x - c|^2 = argmax x.c - |c|^2 / 2,
    one matrix product instead of a distance matrix."""
    return (x @ centroids.T - 0.5 * (centroids * centroids).sum(1)).argmax(1)


def kmeans_pp(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each next centroid is a point drawn with
    probability proportional to its squared distance from the nearest centroid so far."""
    sq = (x * x).sum(1)
    first = int(torch.randint(len(x), (1,), generator=gen))
    chosen = [first]
    closest = (sq - 2.0 * x @ x[first] + sq[first]).clamp_(min=0.0)
    for _ in range(1, k):
        weights = closest.cpu().double() + 1e-12
        i = int(torch.multinomial(weights / weights.sum(), 1, generator=gen))
        chosen.append(i)
        closest = torch.minimum(closest, (sq - 2.0 * x @ x[i] + sq[i]).clamp_(min=0.0))
    return x[chosen].clone()


def means_of(x: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster means of the rows of ``x`` (k, D) and the cluster sizes (k,)."""
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=k).to(x.dtype)
    return sums / counts.clamp(min=1)[:, None], counts


def kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator, labels: torch.Tensor | None = None
           ) -> torch.Tensor:
    """Centroids (k, D) of Lloyd's k-means on ``x`` (N, D). It starts from the means of the groups that
    ``labels`` (N,) form when given (a reclustering starts from the old clusters, as Liu et al. do),
    with k-means++ seeds for the groups that are empty, else from k-means++; a cluster that empties
    keeps its centroid."""
    c = kmeans_pp(x, k, gen)
    if labels is not None:
        means, counts = means_of(x, labels, k)
        c = torch.where(counts[:, None] > 0, means, c)
    for _ in range(iters):
        means, counts = means_of(x, nearest(x, c), k)
        moved = torch.where(counts[:, None] > 0, means, c)
        if torch.equal(moved, c):
            break
        c = moved
    return c


def match_ids(new: torch.Tensor, old: torch.Tensor, k: int) -> torch.Tensor:
    """A permutation p of the k new cluster ids such that p[new] agrees with ``old`` on as many images as
    a greedy matching of the overlap counts finds (largest overlap first)."""
    overlap = torch.zeros(k, k, dtype=torch.long)
    overlap.index_put_((new.cpu(), old.cpu()), torch.ones(len(new), dtype=torch.long), accumulate=True)
    overlap = overlap.double()
    perm = torch.full((k,), -1, dtype=torch.long)
    for _ in range(k):
        flat = int(overlap.argmax())
        i, j = divmod(flat, k)
        perm[i] = j
        overlap[i, :] = -1.0
        overlap[:, j] = -1.0
    return perm


@torch.no_grad()
def principal_components(x: torch.Tensor, dims: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean (D,) and top ``dims`` principal directions (D, dims) of the rows of ``x``, by a seeded
    randomised SVD (Halko et al. 2011: a random range finder plus two power iterations). Not
    torch.pca_lowrank, which draws from the global RNG: clusters must follow ``gen`` for bit-exact resume."""
    mean = x.mean(0)
    centred = x - mean
    probe = torch.randn(x.shape[1], min(dims + 10, x.shape[1]), generator=gen).to(x)
    basis = torch.linalg.qr(centred @ probe).Q
    for _ in range(2):
        basis = torch.linalg.qr(centred @ (centred.T @ basis)).Q
    _, _, vh = torch.linalg.svd(basis.T @ centred, full_matrices=False)
    return mean, vh[:dims].T


@torch.no_grad()
def cluster_images(d: nn.Module, source: TensorSource, k: int, seed: int, previous: Clusters | None = None,
                   batch_size: int = 512) -> Clusters:
    """Cluster every image of ``source`` (on D's device) into ``k`` groups by D's features.

    k-means fits on a fixed random subset of ``KMEANS_SAMPLES`` images (seeded by ``seed``), in the
    subset's top ``KMEANS_DIMS`` principal components, then every image is assigned to its nearest
    centroid. With ``previous``, k-means starts from the old clusters' means in the new features and
    the ids follow the old clusters."""
    if len(source) < k:
        raise ValueError(f"model.self_condition: {k} clusters of {len(source)} images; use fewer clusters")
    gen = torch.Generator().manual_seed(seed)
    feats = torch.cat([discriminator_features(d, source.batch(torch.arange(i, min(i + batch_size, len(source)),
                                                                        device=source.data.device))[0])
                       for i in range(0, len(source), batch_size)])
    subset = torch.randperm(len(source), generator=gen)[:KMEANS_SAMPLES].to(feats.device)
    if feats.shape[1] > KMEANS_DIMS:
        mean, directions = principal_components(feats[subset], KMEANS_DIMS, gen)
        feats = (feats - mean) @ directions
    centroids = kmeans(feats[subset], k, KMEANS_ITERS, gen, None if previous is None else previous.labels[subset])
    labels = torch.cat([nearest(chunk, centroids) for chunk in feats.split(4096)])
    if previous is not None:
        labels = match_ids(labels, previous.labels, k).to(labels.device)[labels]
    prior = torch.bincount(labels, minlength=k).float().cpu()
    return Clusters(labels, prior / prior.sum())
