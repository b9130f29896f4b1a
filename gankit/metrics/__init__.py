"""Sample-quality metrics in a stated feature space: FID and class coverage for labelled domains."""
from __future__ import annotations

import numpy as np
import torch

from gankit.metrics.features import FEATURES, FeatureExtractor, get_extractor
from gankit.metrics.fid import feature_stats, fid, frechet_distance


def class_shares(logits: torch.Tensor, num_classes: int) -> np.ndarray:
    """Fraction of samples the classifier assigns to each class."""
    counts = torch.bincount(logits.argmax(1), minlength=num_classes).double()
    return (counts / counts.sum()).numpy()


def kl_to(shares: np.ndarray, target: np.ndarray) -> float:
    """KL(shares || target) in nats; empty classes contribute nothing to this direction."""
    mask = shares > 0
    return float((shares[mask] * np.log(shares[mask] / target[mask])).sum())


def evaluate_images(images: torch.Tensor, reference: torch.Tensor, reference_labels: torch.Tensor | None = None,
                    extractor: str = "mnist-cnn") -> dict:
    """FID and class statistics of uint8 (N, C, H, W) ``images`` against ``reference`` images."""
    ext = get_extractor(extractor)
    f_gen, logits = ext.extract(images)
    f_ref, _ = ext.extract(reference)
    num_classes = logits.shape[1]
    shares = class_shares(logits, num_classes)
    if reference_labels is not None:
        target = np.bincount(reference_labels.numpy(), minlength=num_classes) / len(reference_labels)
    else:
        target = np.full(num_classes, 1.0 / num_classes)
    return {"fid": fid(f_gen, f_ref), "num": len(images), "num_reference": len(reference),
            "extractor": f"{ext.name}-v{ext.version}", "class_shares": [round(float(s), 4) for s in shares],
            "classes_present": int((shares >= 0.01).sum()), "min_share": float(shares.min()),
            "max_share": float(shares.max()), "class_kl": kl_to(shares, target)}


__all__ = ["FEATURES", "FeatureExtractor", "class_shares", "evaluate_images", "feature_stats", "fid",
           "frechet_distance", "get_extractor", "kl_to"]
