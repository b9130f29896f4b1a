"""Sample-quality metrics in a stated feature space: FID, KID, precision/recall, density/coverage and
class statistics against a named reference dataset (``calculate_metrics``)."""
from __future__ import annotations

import torch

from gankit.data.registry import default_extractor
from gankit.metrics.api import METRICS, MetricInputs, calculate_metrics, format_table, load_samples, run_metrics
from gankit.metrics.classes import class_shares, kl_to
from gankit.metrics.errors import EvalError
from gankit.metrics.extractor import FeatureExtractor
from gankit.metrics.features import FEATURES, get_extractor
from gankit.metrics.fid import feature_stats, fid, frechet_distance
from gankit.metrics.reference import reference_features, reference_images


def evaluate_images(images: torch.Tensor, reference: torch.Tensor, reference_labels: torch.Tensor | None = None,
                    extractor: str = "mnist-cnn") -> dict:
    """FID and class statistics of uint8 (N, C, H, W) ``images`` against explicit ``reference`` images."""
    ext = get_extractor(extractor)
    feats, logits = ext.extract(images)
    ref_feats, _ = ext.extract(reference)
    inputs = MetricInputs(images, "reference", features=feats, logits=logits, ref_features=ref_feats,
                          ref_labels=reference_labels, num_classes=ext.num_classes)
    values = run_metrics(("fid", "classes"), inputs)
    return {"fid": values.pop("fid"), "num": len(images), "num_reference": len(reference),
            "extractor": f"{ext.name}-v{ext.version}", **values}


__all__ = ["EvalError", "FEATURES", "FeatureExtractor", "METRICS", "MetricInputs", "calculate_metrics",
           "class_shares", "default_extractor", "evaluate_images", "feature_stats", "fid", "format_table",
           "frechet_distance", "get_extractor", "kl_to", "load_samples", "reference_features", "reference_images",
           "run_metrics"]
