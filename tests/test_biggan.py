"""gankit.models.biggan: shapes, hierarchical latent, spectral norm, attention, orthogonal
regularisation, and a conditional hinge run with EMA through train(), checkpoint and sampling."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn.utils import parametrize

from conftest import make_cfg
from gankit.config import ConfigError, ModelConfig
from gankit.models import build_discriminator, build_generator, build_models
from gankit.models.biggan import BigGANGenerator, HierarchicalBatchNorm, SelfAttention, orthogonal_penalty
from gankit.sampling import load_generator
from gankit.train import train

Z, K = 12, 10
G_SPEC = {"name": "biggan", "width": 4, "max_width": 8, "shared_dim": 4}
D_SPEC = {"name": "biggan", "width": 4, "max_width": 8}

TINY_BG = {
    "data": {"name": "mnist10k", "limit": 64, "resolution": 16},
    "model": {"latent_dim": Z, "conditional": True, "init": "xavier",
              "generator": {**G_SPEC, "attention": 8, "ortho_reg": 1e-3},
              "discriminator": {**D_SPEC, "attention": 8}},
    "objective": {"name": "hinge"},
    "optim": {"lr_g": 1e-4, "lr_d": 4e-4, "betas_g": [0.0, 0.999], "betas_d": [0.0, 0.999]},
    "train": {"device": "cpu", "seed": 0, "batch_size": 8, "steps": 2, "ema_decay": 0.9},
    "log": {"every": 2, "sample_every": 0, "grid": 2, "progress": False, "tensorboard": False, "plot": False},
    "checkpoint": {"every": 100},
}


@pytest.mark.parametrize("side, num_classes, attention", [(16, K, 8), (32, None, 16), (64, K, 32)])
def test_shapes_and_gradients(side, num_classes, attention):
    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=Z, generator={**G_SPEC, "attention": attention},
                      discriminator={**D_SPEC, "attention": attention})
    g, d = build_models(cfg, (3, side, side), num_classes)
    y = torch.tensor([0, 4, 9]) if num_classes else None
    x = g(torch.randn(3, Z), y)
    assert x.shape == (3, 3, side, side) and x.abs().max() <= 1  # tanh output
    logits = d(x, y)
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in g.parameters())
    assert sum(isinstance(m, SelfAttention) for m in g.modules()) == 1
    assert sum(isinstance(m, SelfAttention) for m in d.modules()) == 1


def test_hierarchical_latent_feeds_each_block_its_chunk():
    g = build_generator(G_SPEC, 10, (1, 32, 32), K)  # 3 blocks + the input layer: 4 chunks of 10
    assert g.chunks == [3, 3, 2, 2]
    norms = [m for m in g.modules() if isinstance(m, HierarchicalBatchNorm)]
    assert [m.cond_dim for m in norms] == [4 + 3, 4 + 3, 4 + 2, 4 + 2, 4 + 2, 4 + 2]  # shared_dim + chunk
    for m in g.modules():  # conditional gains start at 0; as if trained, so that every chunk matters
        if isinstance(m, HierarchicalBatchNorm):
            m.gain.weight.data.normal_(0.0, 0.5)
    g.eval()
    z, y = torch.randn(2, 10), torch.tensor([1, 2])
    with torch.no_grad():
        base = g(z, y)
        for lo, hi in ((0, 3), (3, 6), (6, 8), (8, 10)):
            moved = z.clone()
            moved[:, lo:hi] += 1.0
            assert not torch.allclose(g(moved, y), base), (lo, hi)
        assert not torch.allclose(g(z, (y + 1) % K), base)  # the shared class embedding


def test_unconditional_flat_latent_uses_plain_batchnorm():
    g = build_generator({**G_SPEC, "hierarchical": False}, Z, (1, 16, 16))
    assert g.chunks == [Z] and g.shared is None
    assert all(m.cond_dim == 0 and m.norm.affine for m in g.modules() if isinstance(m, HierarchicalBatchNorm))
    assert g(torch.randn(2, Z)).shape == (2, 1, 16, 16)


def test_spectral_norm_everywhere_but_the_shared_embedding():
    g = build_generator(G_SPEC, Z, (1, 16, 16), K)
    d = build_discriminator(D_SPEC, (1, 16, 16), K)
    layers = (torch.nn.Conv2d, torch.nn.Linear)
    assert all(parametrize.is_parametrized(m, "weight") for m in g.modules() if isinstance(m, layers))
    assert not parametrize.is_parametrized(g.shared, "weight")
    assert all(parametrize.is_parametrized(m, "weight") for m in d.modules()
               if isinstance(m, (*layers, torch.nn.Embedding)))  # the projection embedding too
    plain = build_discriminator({**D_SPEC, "spectral_norm": False}, (1, 16, 16), K)
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())


def test_self_attention_starts_as_identity():
    attn = SelfAttention(8)
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(attn(x), x)
    attn.gamma.data.fill_(1.0)
    assert not torch.allclose(attn(x), x)


@pytest.mark.parametrize("spec, match", [({"attention": 12}, "attention must be one of"),
                                         ({"ortho_reg": -1.0}, "ortho_reg")])
def test_bad_arguments_are_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_generator({**G_SPEC, **spec}, Z, (1, 32, 32), K)


def test_resolution_must_be_a_power_of_two():
    with pytest.raises(ConfigError, match="power-of-two.*data.resolution"):
        build_generator(G_SPEC, Z, (1, 28, 28), K)
    with pytest.raises(ConfigError, match="latent_dim >= 4"):
        build_generator(G_SPEC, 3, (1, 32, 32), K)


def test_orthogonal_penalty_is_zero_for_orthogonal_weights():
    torch.manual_seed(0)
    linear, conv = torch.empty(6, 10), torch.empty(8, 4, 3, 3)
    torch.nn.init.orthogonal_(linear)
    torch.nn.init.orthogonal_(conv)  # 8 filters of 36 weights: orthonormal rows
    assert float(orthogonal_penalty([linear, conv])) < 1e-10
    scaled = linear * torch.arange(1.0, 7.0)[:, None]  # filter norms are free, only their angles count
    assert float(orthogonal_penalty([scaled])) < 1e-9
    w = torch.randn(6, 10)
    gram = w @ w.t()
    expected = (gram.square().sum() - gram.diagonal().square().sum())
    torch.testing.assert_close(orthogonal_penalty([w]), expected)


def test_regularization_hook():
    g = build_generator({**G_SPEC, "ortho_reg": 1e-3}, Z, (1, 16, 16), K)
    matrices = [p for n, p in g.named_parameters() if p.dim() >= 2 and not n.startswith("shared")]
    torch.testing.assert_close(g.regularization(), 1e-3 * orthogonal_penalty(matrices))
    before = g.regularization()
    g.shared.weight.data.normal_()  # the shared embedding is exempt, as in BigGAN
    assert torch.equal(g.regularization(), before)
    g.regularization().backward()
    assert g.blocks[0][0].conv1.parametrizations.weight.original.grad is not None  # it trains the raw weights
    assert build_generator(G_SPEC, Z, (1, 16, 16), K).regularization() is None  # off by default


def test_conditional_hinge_run_with_ema_and_orthogonal_reg(tmp_path):
    result = train(make_cfg(TINY_BG), tmp_path / "run")
    assert result.step == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["g_reg"] > 0 and math.isfinite(r["loss_d"]) for r in rows)  # the loop added G's penalty
    gen = load_generator(result.run_dir)
    assert gen.is_ema and isinstance(gen.net, BigGANGenerator) and gen.num_classes == 10
    x = gen.sample(6, seed=0, labels=3)
    assert x.shape == (6, 1, 16, 16)
    assert torch.equal(x, gen.sample(6, seed=0, labels=3))
    assert not torch.allclose(x, gen.sample(6, seed=0, labels=4))
