"""gankit.models.resnet: shapes at 28, 32 and 64 px, the channel plan, spectral norm, one training step."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from conftest import TINY, make_cfg
from gankit.config import ConfigError, ModelConfig
from gankit.models import build_discriminator, build_generator, build_models
from gankit.models.resnet import DBlock, GBlock
from gankit.train import train

Z = 8


@pytest.mark.parametrize("side", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(side, channels):
    torch.manual_seed(0)
    g, d = build_models(ModelConfig(latent_dim=Z, generator={"name": "resnet", "width": 4},
                                    discriminator={"name": "resnet", "width": 4}), (channels, side, side))
    x = g(torch.randn(2, Z))
    assert x.shape == (2, channels, side, side) and x.abs().max() <= 1
    logits = d(x)
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in g.parameters())


@pytest.mark.parametrize("side, base, blocks", [(28, 7, 2), (32, 4, 3), (64, 4, 4)])
def test_resolution_plan(side, base, blocks):
    g = build_generator({"name": "resnet", "width": 4}, Z, (3, side, side))
    assert g.base == base and len(g.blocks) == blocks
    assert [b.conv1.out_channels for b in g.blocks] == [4 * 2 ** (blocks - 1 - i) for i in range(blocks)]
    d = build_discriminator({"name": "resnet", "width": 4, "extra_blocks": 2}, (3, side, side))
    assert [b.downsample for b in d.blocks] == [True] * blocks + [False] * 2
    assert [b.conv2.out_channels for b in d.blocks] == [4 * 2 ** i for i in range(blocks)] + [4 * 2 ** (blocks - 1)] * 2


def test_max_width_gives_sngan_constant_channels():
    g = build_generator({"name": "resnet", "width": 16, "max_width": 16}, Z, (3, 32, 32))
    assert {m.out_channels for m in g.modules() if isinstance(m, nn.Conv2d)} == {16, 3}
    d = build_discriminator({"name": "resnet", "width": 16, "max_width": 16}, (3, 32, 32))
    assert {m.out_channels for m in d.modules() if isinstance(m, nn.Conv2d)} == {16}


def test_blocks_are_residual():
    block = DBlock(4, 4, downsample=False)
    assert block.shortcut is None  # identity shortcut when the shape is kept
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.conv2.bias.zero_()
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(block(x), x)  # residual branch off: the block is the identity
    up = GBlock(4, 2, None)
    assert up(torch.randn(2, 4, 5, 5), None).shape == (2, 2, 10, 10)


def test_spectral_norm_bounds_every_layer():
    d = build_discriminator({"name": "resnet", "width": 4, "spectral_norm": True}, (1, 28, 28), 10)
    layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    d.train()
    for _ in range(20):  # converge the power iterations
        d(torch.randn(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))
    head = d.head.weight
    assert float(torch.linalg.matrix_norm(head.detach(), ord=2)) == pytest.approx(1.0, rel=1e-3)
    plain = build_discriminator({"name": "resnet", "width": 4}, (1, 28, 28))
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="extra_blocks"):
        build_discriminator({"name": "resnet", "extra_blocks": -1}, (1, 28, 28))
    with pytest.raises(ConfigError, match="resolution 36 cannot be built"):
        build_generator({"name": "resnet"}, Z, (1, 36, 36))
    with pytest.raises(ConfigError, match="mlp model for 2D points"):
        build_discriminator({"name": "resnet"}, (2,))


def test_resnet_trains(tmp_path):
    cfg = make_cfg(TINY, "train.steps=2", "log.every=1", "model.init=xavier",
                   "model.generator={name: resnet, width: 4}",
                   "model.discriminator={name: resnet, width: 4, spectral_norm: true}")
    result = train(cfg, tmp_path / "run")
    assert result.step == 2 and all(torch.isfinite(torch.tensor(v)) for v in result.last.values())
