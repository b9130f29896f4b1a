"""gankit.models: output shapes of every architecture option, resolution rules, init schemes, EMA."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from gankit.config import ConfigError, ModelConfig
from gankit.ema import EMA, ema_decay_at, ema_initial_share
from gankit.models import build_discriminator, build_generator, build_models, init_weights
from gankit.models.layers import pyramid

Z = 8


def _shapes(g_spec: dict, d_spec: dict, shape: tuple[int, ...], batch: int = 3, **model) -> None:
    torch.manual_seed(0)
    g, d = build_models(ModelConfig(latent_dim=Z, generator=g_spec, discriminator=d_spec, **model), shape)
    x = g(torch.randn(batch, Z))
    assert x.shape == (batch, *shape)
    logits = d(x)
    assert logits.shape == (batch,)
    assert torch.isfinite(logits).all()
    logits.sum().backward()  # gradients flow from D's output back into G
    assert all(p.grad is not None for p in g.parameters())


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (2,)])
def test_mlp_shapes(shape):
    _shapes({"name": "mlp", "widths": [16]}, {"name": "mlp", "widths": [16, 8]}, shape)


def test_mlp_options():
    g = build_generator({"name": "mlp", "widths": [16, 16], "batchnorm": True, "dropout": 0.5,
                         "activation": "relu", "output": "sigmoid"}, Z, (1, 8, 8))
    assert any(isinstance(m, nn.BatchNorm1d) for m in g.modules())
    assert any(isinstance(m, nn.Dropout) for m in g.modules())
    out = g(torch.randn(4, Z))
    assert out.shape == (4, 1, 8, 8) and out.min() >= 0 and out.max() <= 1
    g2 = build_generator({"name": "mlp", "widths": [4], "output": "none"}, Z, (2,))
    assert not any(isinstance(m, (nn.Tanh, nn.Sigmoid)) for m in g2.modules())
    with pytest.raises(ConfigError, match="activation"):
        build_generator({"name": "mlp", "activation": "gelu"}, Z, (2,))
    with pytest.raises(ConfigError, match="output"):
        build_generator({"name": "mlp", "output": "softmax"}, Z, (2,))


def test_mlp_first_norm_false_leaves_the_first_layer_unnormalised():
    for net in (build_generator({"name": "mlp", "widths": [16, 8, 8], "batchnorm": True, "first_norm": False},
                                Z, (1, 8, 8)),
                build_discriminator({"name": "mlp", "widths": [16, 8, 8], "batchnorm": True, "first_norm": False},
                                    (1, 8, 8))):
        assert [m.num_features for m in net.modules() if isinstance(m, nn.BatchNorm1d)] == [8, 8]
    g = build_generator({"name": "mlp", "widths": [16, 8], "batchnorm": True}, Z, (1, 8, 8))
    assert [m.num_features for m in g.modules() if isinstance(m, nn.BatchNorm1d)] == [16, 8]


def test_dcgan_bias_before_norm_keeps_every_conv_bias():
    for biased in (False, True):
        g = build_generator({"name": "dcgan", "width": 4, "bias_before_norm": biased}, Z, (3, 32, 32))
        d = build_discriminator({"name": "dcgan", "width": 4, "bias_before_norm": biased}, (3, 32, 32))
        g_bias = [m.bias is not None for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
        d_bias = [m.bias is not None for m in d.modules() if isinstance(m, nn.Conv2d)]
        # without it only the layers not followed by BatchNorm keep a bias: G's output, D's first and head
        assert g_bias == ([True] * 4 if biased else [False, False, False, True])
        assert d_bias == ([True] * 4 if biased else [True, False, False, True])


def test_dcgan_pad_to_runs_a_32px_discriminator_on_28px_images():
    d = build_discriminator({"name": "dcgan", "width": 4, "pad_to": 32}, (1, 28, 28))
    d32 = build_discriminator({"name": "dcgan", "width": 4}, (1, 32, 32))
    assert [p.shape for p in d.parameters()] == [p.shape for p in d32.parameters()]
    d32.load_state_dict(d.state_dict())  # the same state: checkpoints see no pad layer
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(d(x), d32(torch.nn.functional.pad(x, (2, 2, 2, 2))))
    for bad in (26, 31):
        with pytest.raises(ConfigError, match="pad_to must exceed"):
            build_discriminator({"name": "dcgan", "pad_to": bad}, (1, 28, 28))


@pytest.mark.parametrize("side", [28, 32, 64, 48])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(side, channels):
    _shapes({"name": "dcgan", "width": 4}, {"name": "dcgan", "width": 4}, (channels, side, side), batch=2)


def test_dcgan_widths_follow_the_pyramid():
    g = build_generator({"name": "dcgan", "width": 4}, Z, (3, 64, 64))
    convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [32, 16, 8, 4, 3]
    d = build_discriminator({"name": "dcgan", "width": 4, "max_width": 8}, (3, 64, 64))
    assert [c.out_channels for c in d.modules() if isinstance(c, nn.Conv2d)] == [4, 8, 8, 8, 1]


def test_dcgan_fc_stem_and_hidden():
    g = build_generator({"name": "dcgan", "width": 4, "stem": "fc", "fc_hidden": [32]}, Z, (1, 28, 28))
    linears = [m for m in g.stem.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [32, 8 * 7 * 7]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in g.stem.modules()) == 2
    assert g(torch.randn(2, Z)).shape == (2, 1, 28, 28)


def test_dcgan_kernel5_maxpool_fc_head():
    _shapes({"name": "dcgan", "width": 4, "kernel": 5},
            {"name": "dcgan", "width": 4, "kernel": 5, "downsample": "maxpool", "head": "fc",
             "fc_hidden": [16], "dropout": 0.3}, (1, 28, 28), batch=2)
    d = build_discriminator({"name": "dcgan", "width": 4, "kernel": 5, "downsample": "maxpool",
                             "head": "fc"}, (1, 28, 28))
    assert sum(isinstance(m, nn.MaxPool2d) for m in d.modules()) == 2
    assert all(m.stride == (1, 1) for m in d.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("kernel", [3, 4, 5, 6])
def test_dcgan_any_kernel_doubles_exactly(kernel):
    _shapes({"name": "dcgan", "width": 4, "kernel": kernel}, {"name": "dcgan", "width": 4, "kernel": kernel},
            (1, 32, 32), batch=2)


def test_dcgan_norm_none_has_no_batchnorm_and_uses_biases():
    g = build_generator({"name": "dcgan", "width": 4, "norm": "none"}, Z, (1, 32, 32))
    d = build_discriminator({"name": "dcgan", "width": 4, "norm": "none"}, (1, 32, 32))
    for net in (g, d):
        assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in net.modules())
        assert all(m.bias is not None for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    assert d(g(torch.randn(2, Z))).shape == (2,)
    with_bn = build_generator({"name": "dcgan", "width": 4}, Z, (1, 32, 32))
    assert any(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules())


@pytest.mark.parametrize("spec, match", [
    ({"stem": "mlp"}, "stem"),
    ({"norm": "layer"}, "norm"),
    ({"activation": "tanh"}, "activation"),
])
def test_dcgan_bad_generator_options(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_generator({"name": "dcgan", **spec}, Z, (1, 28, 28))


@pytest.mark.parametrize("spec, match", [
    ({"downsample": "avgpool"}, "downsample"),
    ({"downsample": "maxpool", "kernel": 4}, "odd kernel"),
    ({"head": "attention"}, "head"),
])
def test_dcgan_bad_discriminator_options(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_discriminator({"name": "dcgan", **spec}, (1, 28, 28))


def test_dcgan_on_2d_points_is_a_config_error():
    with pytest.raises(ConfigError, match="mlp model for 2D points"):
        build_models(ModelConfig(), (2,))
    with pytest.raises(ConfigError, match="model.discriminator"):
        build_discriminator({"name": "dcgan"}, (2,))


@pytest.mark.parametrize("side", [36, 4, 7, 100])
def test_unsupported_resolution_is_a_config_error(side):
    with pytest.raises(ConfigError, match=f"resolution {side} cannot be built"):
        build_generator({"name": "dcgan"}, Z, (1, side, side))


def test_pyramid():
    assert pyramid(28) == (7, 2)
    assert pyramid(32) == (4, 3)
    assert pyramid(48) == (3, 4)
    assert pyramid(64) == (4, 4)
    assert pyramid(128) == (4, 5)
    for side in (28, 32, 48, 64, 96, 128, 256, 12, 20):
        base, levels = pyramid(side)
        assert base * 2 ** levels == side and 3 <= base <= 7 and levels >= 1
    with pytest.raises(ValueError):
        pyramid(36)  # 36 -> 18 -> 9: a 9 px base is too large


def test_non_square_images_are_refused():
    with pytest.raises(ConfigError, match="square"):
        build_generator({"name": "dcgan"}, Z, (1, 28, 32))


def test_dcgan_init_std():
    torch.manual_seed(0)
    g, d = build_models(ModelConfig(latent_dim=Z, generator={"name": "dcgan", "width": 16},
                                    discriminator={"name": "dcgan", "width": 16}, init="dcgan"), (1, 32, 32))
    weights = torch.cat([m.weight.flatten() for net in (g, d) for m in net.modules()
                         if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))])
    assert weights.numel() > 10_000
    assert abs(weights.mean().item()) < 0.002
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    scales = torch.cat([m.weight for net in (g, d) for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
    assert scales.mean().item() == pytest.approx(1.0, abs=0.01) and 0.005 < scales.std().item() < 0.04
    biases = [m.bias for net in (g, d) for m in net.modules()
              if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d)) and m.bias is not None]
    assert biases and all((b == 0).all() for b in biases)


def test_xavier_and_default_init():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32))
    before = net[0].weight.detach().clone()
    init_weights(net, "default")
    assert torch.equal(net[0].weight, before)
    init_weights(net, "xavier")
    bound = (6 / (64 + 32)) ** 0.5
    assert net[0].weight.abs().max() <= bound and net[0].weight.std() > 0.5 * bound / 3 ** 0.5
    assert (net[1].weight == 1).all() and (net[1].bias == 0).all() and (net[0].bias == 0).all()
    with pytest.raises(ValueError, match="init scheme"):
        init_weights(net, "orthogonal")


def test_models_are_deterministic_under_a_seed():
    cfg = ModelConfig(latent_dim=Z, generator={"name": "dcgan", "width": 4}, discriminator={"name": "mlp"})
    torch.manual_seed(3)
    g1, _ = build_models(cfg, (1, 28, 28))
    torch.manual_seed(3)
    g2, _ = build_models(cfg, (1, 28, 28))
    for a, b in zip(g1.state_dict().values(), g2.state_dict().values()):
        assert torch.equal(a, b)


def test_ema_copies_before_start_then_averages():
    net = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(net.weight)
    ema = EMA(net, decay=0.9, start=2, warmup=False)
    assert not any(p.requires_grad for p in ema.shadow.parameters()) and not ema.shadow.training
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net, step=1)  # before start: a copy
    assert torch.equal(ema.shadow.weight, net.weight)
    with torch.no_grad():
        net.weight.fill_(2.0)
    ema.update(net, step=2)  # 0.9 * 1 + 0.1 * 2
    assert torch.allclose(ema.shadow.weight, torch.full((1, 2), 1.1))
    ema.update(net, step=3)  # 0.9 * 1.1 + 0.1 * 2
    assert torch.allclose(ema.shadow.weight, torch.full((1, 2), 1.19))


def test_ema_warmup_ramps_the_decay_and_forgets_the_start():
    # min(decay, (1 + n) / (10 + n)) over the n-th averaging update (n = 0 at ema_start)
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.999) == pytest.approx(91 / 100)
    assert ema_decay_at(100_000, 0.999) == 0.999
    assert ema_decay_at(4, 0.999, start=5) == 0.0  # before start: a copy
    assert ema_decay_at(7, 0.999, start=5) == pytest.approx(3 / 12)
    assert ema_decay_at(90, 0.999, warmup=False) == 0.999
    # the share of G's start the average keeps: the product of the decays since averaging began
    assert ema_initial_share(100, 0.999, warmup=False) == pytest.approx(0.999 ** 100)
    assert ema_initial_share(3, 0.999) == pytest.approx((2 / 11) * (3 / 12) * (4 / 13))
    assert ema_initial_share(100, 0.999) < 1e-8
    net = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(net.weight)
    ema = EMA(net, decay=0.999)
    with torch.no_grad():
        net.weight.fill_(1.0)
    for step in range(1, 101):
        ema.update(net, step)
    assert float(ema.shadow.weight[0, 0]) == pytest.approx(1 - ema_initial_share(100, 0.999), abs=1e-6)


def test_ema_follows_batchnorm_statistics():
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    ema = EMA(net, decay=0.99)
    net(torch.randn(8, 2) + 5.0)  # training mode updates running statistics
    ema.update(net, step=1)
    assert torch.equal(ema.shadow[1].running_mean, net[1].running_mean)
    assert torch.equal(ema.shadow[1].num_batches_tracked, net[1].num_batches_tracked)


# ---------------------------------------------------------------------------------------------
# Spectral normalisation and the minibatch-stddev layer


def _weight_matrices(net: nn.Module) -> list[torch.Tensor]:
    return [m.weight.detach().flatten(1) for m in net.modules()
            if isinstance(m, (nn.Linear, nn.Conv2d)) and hasattr(m, "parametrizations")]


@pytest.mark.parametrize("spec, shape", [
    ({"name": "mlp", "widths": [64, 32]}, (2,)),
    ({"name": "dcgan", "width": 8, "norm": "none"}, (1, 28, 28)),
])
@pytest.mark.parametrize("init", ["dcgan", "xavier", "default"])
def test_spectral_norm_bounds_the_top_singular_value(spec, shape, init):
    torch.manual_seed(0)
    _, d = build_models(ModelConfig(latent_dim=Z, generator={"name": "mlp", "widths": [8]},
                                    discriminator={**spec, "spectral_norm": True}, init=init), shape)
    mats = _weight_matrices(d)
    assert len(mats) == sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in d.modules())
    # every layer, including a re-initialised one, is divided by its own top singular value
    for w in mats:
        assert torch.linalg.matrix_norm(w, 2).item() == pytest.approx(1.0, abs=0.02)
    # the trainable tensor is the unnormalised original; the power-iteration vectors are buffers
    keys = list(d.state_dict())
    assert any(k.endswith("parametrizations.weight.original") for k in keys)
    assert any(k.endswith("parametrizations.weight.0._u") for k in keys)
    assert d(torch.randn(3, *shape)).shape == (3,)


def test_spectral_norm_is_off_by_default():
    d = build_discriminator({"name": "mlp", "widths": [8]}, (2,))
    assert not any("parametrizations" in k for k in d.state_dict())


def test_minibatch_std_adds_one_feature_map_of_the_batch_spread():
    from gankit.models.layers import MinibatchStd

    layer = MinibatchStd(group=4)
    x = torch.randn(8, 3, 5, 5)
    out = layer(x)
    assert out.shape == (8, 4, 5, 5) and torch.equal(out[:, :3], x)
    same = layer(x[:1].expand(8, 3, 5, 5).contiguous())[:, 3]  # no spread: ~0
    assert same.abs().max().item() < 1e-3
    assert out[:, 3].min().item() > 0.3  # unit-variance features: spread ~0.8
    assert layer(torch.randn(3, 2, 4, 4)).shape == (3, 3, 4, 4)  # 4 does not divide 3: groups of 1
    # in D, for both heads, with spectral norm too
    for head in ("conv", "fc"):
        d = build_discriminator({"name": "dcgan", "width": 4, "minibatch_std": True, "head": head,
                                 "spectral_norm": True, "norm": "none"}, (1, 28, 28))
        assert any(isinstance(m, MinibatchStd) for m in d.modules())
        assert d(torch.randn(6, 1, 28, 28)).shape == (6,)


def test_mlp_minibatch_std_adds_one_feature_of_the_batch_spread():
    from gankit.models.layers import MinibatchStd

    x = torch.randn(8, 5)
    out = MinibatchStd(group=4)(x)
    assert out.shape == (8, 6) and torch.equal(out[:, :5], x) and out[:, 5].min().item() > 0.3
    for classes in (None, 10):  # unconditional, and a projection D whose last hidden layer has one more feature
        d = build_discriminator({"name": "mlp", "widths": [16, 8], "minibatch_std": True}, (1, 28, 28), classes)
        assert any(isinstance(m, MinibatchStd) for m in d.modules())
        y = None if classes is None else torch.arange(6)
        assert d(torch.randn(6, 1, 28, 28), y).shape == (6,)


@pytest.mark.parametrize("mode, kernel, stem", [("nearest", 4, "conv"), ("bilinear", 5, "conv"), ("nearest", 3, "fc")])
def test_dcgan_upsample_then_conv_doubles_exactly_without_transposed_convs(mode, kernel, stem):
    g = build_generator({"name": "dcgan", "width": 4, "upsample": mode, "kernel": kernel, "stem": stem}, 8, (1, 28, 28))
    assert g(torch.randn(3, 8)).shape == (3, 1, 28, 28)
    body = [m for m in g.body.modules() if isinstance(m, (nn.ConvTranspose2d, nn.Upsample))]
    assert body and all(isinstance(m, nn.Upsample) and m.mode == mode for m in body)
    with pytest.raises(ValueError, match="upsample must be transposed, nearest or bilinear"):
        build_generator({"name": "dcgan", "width": 4, "upsample": "pixelshuffle"}, 8, (1, 28, 28))


def test_packed_discriminator_judges_groups_of_samples():
    from gankit.config import ModelConfig
    from gankit.models import build_models
    from gankit.models.pack import PackedDiscriminator

    cfg = ModelConfig(latent_dim=8, generator={"name": "dcgan", "width": 4},
                      discriminator={"name": "dcgan", "width": 4}, pack=2)
    g, d = build_models(cfg, (1, 28, 28))
    assert isinstance(d, PackedDiscriminator)
    x = torch.randn(6, 1, 28, 28)
    assert d(x).shape == (3,)
    # a pack is consecutive samples: swapping two packs swaps their logits, nothing else
    d.eval()
    swapped = torch.cat([x[2:4], x[:2], x[4:]])
    torch.testing.assert_close(d(swapped), d(x)[[1, 0, 2]])
    with pytest.raises(ValueError, match="divisible by 2"):
        d(x[:5])
    points = build_models(ModelConfig(latent_dim=2, generator={"name": "mlp", "widths": [8]},
                                      discriminator={"name": "mlp", "widths": [8]}, pack=4), (2,))[1]
    assert points(torch.randn(8, 2)).shape == (2,)


def test_pack_is_validated_against_the_batch_and_conditioning(tiny_cfg):
    from conftest import make_cfg
    from gankit.config import from_dict
    from gankit.train import prepare

    with pytest.raises(ConfigError, match="model.pack"):
        prepare(from_dict(make_cfg(tiny_cfg, "model.pack=3")))  # batch 32
    with pytest.raises(ConfigError, match="model.pack > 1 cannot be combined"):
        prepare(from_dict(make_cfg(tiny_cfg, "model.pack=2", "model.conditional=true")))


def test_the_ema_ramp_up_spans_a_fraction_of_the_run():
    from gankit.ema import RAMPUP

    # the default is the ramp gankit always had, bit for bit
    assert all(ema_decay_at(n, 0.9999, rampup=RAMPUP) == min(0.9999, (1 + n) / (10 + n)) for n in range(0, 5000, 7))
    # rampup 0.25: the average spans about a quarter of the steps so far, 1 / (1 - decay) = 1 + 0.25 (1 + n)
    assert 1 / (1 - ema_decay_at(3999, 0.99999, rampup=0.25)) == pytest.approx(1001)
    assert ema_decay_at(3999, 0.999, rampup=0.25) == 0.999  # capped by the decay
