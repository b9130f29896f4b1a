"""gankit.augment: DiffAugment keeps shapes, passes gradients, is reproducible under a seeded generator,
does what each transform says, and is wired into training as a config option."""
from __future__ import annotations

import pytest
import torch

from conftest import TINY, TINY_RING, make_cfg, step_game
from gankit.augment import AugmentedDiscriminator, DiffAugment, color, cutout, parse_policy, translation
from gankit.config import ConfigError, from_dict
from gankit.train import prepare, train

POLICY = "color,translation,cutout"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (3, 3, 32, 32), (2, 3, 17, 9)])
def test_shapes_are_kept(shape):
    x = torch.rand(shape) * 2 - 1
    assert DiffAugment(POLICY)(x, _gen()).shape == shape


def test_differentiable():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    out = DiffAugment(POLICY)(x, _gen())
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()


def test_deterministic_under_a_seeded_generator():
    x = torch.randn(8, 1, 28, 28)
    aug = DiffAugment(POLICY)
    assert torch.equal(aug(x, _gen(3)), aug(x, _gen(3)))
    assert not torch.equal(aug(x, _gen(3)), aug(x, _gen(4)))
    torch.manual_seed(0)  # the global RNG plays no part
    a = aug(x, _gen(5))
    torch.manual_seed(1)
    assert torch.equal(a, aug(x, _gen(5)))


def test_translation_shifts_by_whole_pixels_with_zero_fill():
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0  # one bright pixel: translation moves it by at most 2 px (0.125 * 16)
    out = translation(x, _gen())
    ys, xs = (out[:, 0] == 1).nonzero()[:, 1:].T
    assert len(ys) == 64 and out.sum() == 64  # moved, never duplicated or lost
    assert (ys - 8).abs().max() <= 2 and (xs - 8).abs().max() <= 2
    assert len(set(zip(ys.tolist(), xs.tolist()))) > 5  # per-sample shifts
    edge = translation(torch.ones(16, 1, 16, 16), _gen())
    assert (edge == 0).any()  # the image border is filled with zeros


def test_cutout_zeroes_a_square_of_half_the_side():
    out = cutout(torch.ones(32, 1, 16, 16), _gen())
    zeros = (out == 0).sum((1, 2, 3))
    assert zeros.max() == 8 * 8 and zeros.min() > 0  # an 8 x 8 square, clipped at the borders
    assert set(out.unique().tolist()) == {0.0, 1.0}


def test_color_changes_brightness_per_sample():
    x = torch.zeros(16, 3, 8, 8)
    out = color(x, _gen())
    means = out.mean((1, 2, 3))
    assert means.abs().max() <= 0.5 and means.std() > 0.05


def test_policy_parsing():
    assert parse_policy("") == ()
    assert parse_policy(" translation , cutout ") == ("translation", "cutout")
    assert not DiffAugment("")
    with pytest.raises(ConfigError, match="train.augment: unknown augmentation 'flip'"):
        parse_policy("translation,flip")
    with pytest.raises(ConfigError, match="twice"):
        parse_policy("color,color")


class _D(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).squeeze(1)


def test_augmented_discriminator_wraps_d_without_weights_of_its_own():
    d = _D()
    wrapped = AugmentedDiscriminator(d, DiffAugment("cutout"), _gen())
    assert list(wrapped.parameters()) == list(d.parameters())
    x = torch.ones(5, 1, 8, 8)
    assert not torch.equal(wrapped(x), d(x))  # it judged cut-out images


def test_training_uses_the_augmented_discriminator():
    plain = prepare(from_dict(make_cfg(TINY)))
    augmented = prepare(from_dict(make_cfg(TINY, "train.augment=translation")))
    assert plain.judge is plain.d
    assert isinstance(augmented.judge, AugmentedDiscriminator) and augmented.judge.d is augmented.d
    assert augmented.judge.gen is augmented.rng  # the trainer's stream: checkpointed, so resume is exact
    # same seed, same weights, same batch: only the augmentation differs
    assert step_game(plain, 10)["loss_d"] != step_game(augmented, 10)["loss_d"]


def test_augment_on_points_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="train.augment augments images"):
        train(make_cfg(TINY_RING, "train.augment=translation"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


ADA = ["train.augment=translation,color,cutout", "train.ada_target=0.2", "train.ada_kimg=0.5"]


def test_adaptive_p_rises_while_d_ranks_reals_surely_and_falls_when_it_does_not():
    from gankit.augment import AdaptiveAugment

    ada = AdaptiveAugment(target=0.6, speed_images=1000, interval=4)
    for _ in range(8):  # D ranks every real above its fake: overfitting
        ada.observe(torch.tensor(1.0), batch=50)
    assert ada.p == pytest.approx(0.4) and ada.last_r == 1.0  # two adjustments of 50 x 4 / 1000
    for _ in range(40):
        ada.observe(torch.tensor(1.0), batch=50)
    assert ada.p == 1.0  # capped
    for _ in range(4):
        ada.observe(torch.tensor(0.1), batch=50)
    assert ada.p == pytest.approx(0.8)
    for _ in range(100):
        ada.observe(torch.tensor(-1.0), batch=50)
    assert ada.p == 0.0


def test_adaptive_augment_applies_each_transform_with_probability_p():
    from gankit.augment import AdaptiveAugment

    ada = AdaptiveAugment(0.6, 1000)
    aug = DiffAugment("cutout", ada)
    x = torch.ones(2000, 1, 8, 8)
    assert torch.equal(aug(x, _gen()), x)  # p = 0: untouched, nothing drawn
    ada.p = 0.3
    changed = (aug(x, _gen()) != x).flatten(1).any(1).float().mean()
    assert abs(float(changed) - 0.3) < 0.04
    ada.p = 1.0
    assert (aug(x, _gen()) != x).flatten(1).any(1).all()


def test_ada_needs_a_policy():
    with pytest.raises(ConfigError, match="set train.augment too"):
        from_dict(make_cfg(TINY, "train.ada_target=0.6"))


def test_ada_trains_logs_p_and_resumes_bit_exactly(tmp_path):
    import json

    from conftest import assert_states_equal
    from gankit.checkpoint import load_checkpoint

    cfg = make_cfg(TINY, *ADA, "train.steps=10", "checkpoint.every=5", "log.every=1")
    straight = train(cfg, tmp_path / "straight")
    rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    ps = [r["ada_p"] for r in rows]
    assert max(ps) > 0 and all(0 <= p <= 1 for p in ps) and all(-1 <= r["ada_r"] <= 1 for r in rows)
    train(make_cfg(cfg, "train.steps=5"), tmp_path / "run")  # stops mid-interval: 5 x 2 D steps, every 4
    resumed = train(cfg, tmp_path / "run", resume=True)
    (a, meta_a), (b, meta_b) = load_checkpoint(resumed.checkpoint), load_checkpoint(straight.checkpoint)
    for key in ("g", "d", "g_ema", "opt_g", "opt_d", "rng"):
        assert_states_equal(a[key], b[key], key)
    assert meta_a["ada"] == meta_b["ada"] and meta_a["ada"]["p"] > 0
