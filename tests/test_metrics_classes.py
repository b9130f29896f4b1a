"""gankit.metrics.classes: the numbers behind `classes` and `class_agreement` (class shares under a
classifier, classes present, KL to the reference's class distribution, agreement overall and worst class)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gankit.metrics.classes import PRESENT_SHARE, class_agreement, class_shares, class_stats, kl_to


def _logits_for(classes: list[int], num_classes: int, seed: int = 0) -> torch.Tensor:
    """Random logits whose argmax is ``classes``: the functions must read the argmax only."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(len(classes), num_classes, generator=g)
    logits[torch.arange(len(classes)), torch.tensor(classes)] = 10.0
    return logits


def test_shares_count_the_argmax_of_each_sample():
    shares = class_shares(_logits_for([0, 2, 2, 2, 3, 3, 0, 2], 5), 5)
    assert shares.dtype == np.float64
    np.testing.assert_allclose(shares, [2 / 8, 0, 4 / 8, 2 / 8, 0])
    assert shares.sum() == pytest.approx(1.0)


def test_kl_is_zero_on_the_target_and_ignores_empty_classes():
    uniform = np.full(4, 0.25)
    assert kl_to(uniform.copy(), uniform) == 0.0
    # all mass on two of four classes: KL(shares || uniform) = log 2, with no 0 * log 0 = NaN term
    assert kl_to(np.array([0.5, 0.5, 0.0, 0.0]), uniform) == pytest.approx(math.log(2))
    assert kl_to(np.array([1.0, 0.0, 0.0, 0.0]), uniform) == pytest.approx(math.log(4))  # one class: the maximum
    skewed = np.array([0.7, 0.1, 0.1, 0.1])
    assert kl_to(uniform, skewed) == pytest.approx(float((uniform * np.log(uniform / skewed)).sum()))
    assert kl_to(uniform, skewed) > 0


def test_stats_count_a_class_present_from_one_percent():
    # 200 samples: class 3 holds 2 (1 %, present), class 4 holds 1 (0.5 %, not present), class 5 none
    classes = [0] * 100 + [1] * 60 + [2] * 37 + [3] * 2 + [4]
    stats = class_stats(_logits_for(classes, 6), 6, np.full(6, 1 / 6))
    assert PRESENT_SHARE == 0.01
    assert stats["classes_present"] == 4 and stats["num_classes"] == 6
    assert stats["min_share"] == 0.0 and stats["max_share"] == 0.5
    assert stats["class_shares"] == [0.5, 0.3, 0.185, 0.01, 0.005, 0.0]
    shares = np.array([100, 60, 37, 2, 1, 0]) / 200
    expected = sum(s * math.log(s * 6) for s in shares if s > 0)
    assert stats["class_kl"] == pytest.approx(expected)
    assert all(isinstance(stats[k], float) for k in ("min_share", "max_share", "class_kl"))


def test_stats_against_the_reference_distribution_not_uniform():
    """A generator matching an unbalanced reference scores KL 0 against it, not against uniform."""
    target = np.array([0.5, 0.25, 0.25])
    stats = class_stats(_logits_for([0, 0, 1, 2], 3), 3, target)
    assert stats["class_kl"] == pytest.approx(0.0, abs=1e-12)
    assert class_stats(_logits_for([0, 0, 1, 2], 3), 3, np.full(3, 1 / 3))["class_kl"] > 0.05


def test_agreement_reports_the_worst_class_beside_the_mean():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    predicted = [0, 0, 0, 0, 1, 1, 1, 1, 0, 1]  # the generator ignores label 2
    result = class_agreement(_logits_for(predicted, 3), labels)
    assert result == {"class_agreement": pytest.approx(0.8), "class_agreement_min": 0.0}
    perfect = class_agreement(_logits_for(labels.tolist(), 3), labels)
    assert perfect == {"class_agreement": 1.0, "class_agreement_min": 1.0}
    # classes with no samples are not counted as failing; integer labels of any dtype
    result = class_agreement(_logits_for([1, 1, 2], 5), torch.tensor([1, 1, 2], dtype=torch.int32))
    assert result == {"class_agreement": 1.0, "class_agreement_min": 1.0}
