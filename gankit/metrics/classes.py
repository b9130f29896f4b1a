"""Class statistics of samples under a classifier: shares per class and their KL to a target."""
from __future__ import annotations

import numpy as np
import torch

PRESENT_SHARE = 0.01  # a class counts as present when at least 1 % of the samples fall in it


def class_shares(logits: torch.Tensor, num_classes: int) -> np.ndarray:
    """Fraction of samples the classifier assigns to each class."""
    counts = torch.bincount(logits.argmax(1), minlength=num_classes).double()
    return (counts / counts.sum()).numpy()


def kl_to(shares: np.ndarray, target: np.ndarray) -> float:
    """KL(shares || target) in nats; empty classes contribute nothing to this direction."""
    mask = shares > 0
    return float((shares[mask] * np.log(shares[mask] / target[mask])).sum())


def class_stats(logits: torch.Tensor, num_classes: int, target: np.ndarray) -> dict[str, object]:
    """Shares, classes present, smallest / largest share and KL(shares || target)."""
    shares = class_shares(logits, num_classes)
    return {"classes_present": int((shares >= PRESENT_SHARE).sum()), "num_classes": num_classes,
            "min_share": float(shares.min()), "max_share": float(shares.max()), "class_kl": kl_to(shares, target),
            "class_shares": [round(float(s), 4) for s in shares]}


def class_agreement(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """How often the classifier agrees with the class each sample was generated for: overall, and for
    the worst class (a conditional G that ignores one label shows there, not in the mean)."""
    agree = logits.argmax(1) == labels.to(logits.device).long()
    per_class = [float(agree[labels == k].float().mean()) for k in labels.unique().tolist()]
    return {"class_agreement": float(agree.float().mean()), "class_agreement_min": min(per_class)}
