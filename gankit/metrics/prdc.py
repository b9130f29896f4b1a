"""k-NN manifold metrics: precision/recall (Kynkäänniemi et al. 2019) and density/coverage
(Naeem et al. 2020), with k = 3 nearest neighbours in feature space."""
from __future__ import annotations

import numpy as np
import torch


def _pairwise(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    return torch.cat([torch.cdist(a[i:i + chunk], b) for i in range(0, len(a), chunk)])


def _radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour in its own set (itself excluded)."""
    return torch.cat([torch.cdist(x[i:i + 2048], x).kthvalue(k + 1, dim=1).values
                      for i in range(0, len(x), 2048)])


def prdc(real: torch.Tensor | np.ndarray, fake: torch.Tensor | np.ndarray, k: int = 3) -> dict[str, float]:
    """precision, recall, density and coverage of ``fake`` against ``real`` features."""
    real_t = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    fake_t = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    r_real, r_fake = _radii(real_t, k), _radii(fake_t, k)
    d = _pairwise(real_t, fake_t)  # (n_real, n_fake)
    inside_real = d <= r_real[:, None]  # fake j inside the k-NN ball of real i
    precision = inside_real.any(0).double().mean().item()
    recall = (d <= r_fake[None, :]).any(1).double().mean().item()
    density = inside_real.sum(0).double().mean().item() / k
    coverage = (d.min(1).values <= r_real).double().mean().item()
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}
