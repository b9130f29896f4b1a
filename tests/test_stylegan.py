"""gankit.models.stylegan: shapes, modulation, equalised lr, randomness rules, w_avg, training and resume."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_states_equal, make_cfg
from gankit.checkpoint import load_checkpoint
from gankit.config import ConfigError, ModelConfig
from gankit.models import build_discriminator, build_generator, build_models
from gankit.models.stylegan import StyleGANGenerator, modulated_conv2d
from gankit.sampling import load_generator
from gankit.train import train

Z = 8
G_SPEC = {"name": "stylegan", "width": 4, "max_width": 8, "mapping_layers": 2}
D_SPEC = {"name": "stylegan", "width": 4, "max_width": 8}

# A tiny StyleGAN run: style mixing, noise inputs, lazy R1 and EMA all on, so every random stream of
# the model (global RNG: noise and mixing) and of the objective is exercised.
TINY_SG = {
    "data": {"name": "mnist10k", "limit": 64, "resolution": 16},
    "model": {"latent_dim": Z, "init": "default", "generator": dict(G_SPEC), "discriminator": dict(D_SPEC)},
    "objective": {"name": "ns", "r1_gamma": 1.0, "r1_every": 2},
    "optim": {"lr_g": 2e-3, "lr_d": 2e-3, "betas_g": [0.0, 0.99], "betas_d": [0.0, 0.99]},
    "train": {"device": "cpu", "threads": 2, "seed": 0, "batch_size": 8, "steps": 4, "ema_decay": 0.9},
    "log": {"every": 2, "sample_every": 0, "grid": 2, "progress": False, "tensorboard": False, "plot": False},
    "checkpoint": {"every": 2, "keep": 5},
}


def _g(side: int = 16, channels: int = 1, num_classes: int | None = None, **kw) -> StyleGANGenerator:
    torch.manual_seed(0)
    return build_generator({**G_SPEC, **kw}, Z, (channels, side, side), num_classes)


@pytest.mark.parametrize("channels, side", [(1, 16), (3, 32), (1, 64)])
def test_shapes_and_gradients(channels, side):
    torch.manual_seed(0)
    g, d = build_models(ModelConfig(latent_dim=Z, generator=G_SPEC, discriminator=D_SPEC, init="default"),
                        (channels, side, side))
    x = g(torch.randn(3, Z))
    assert x.shape == (3, channels, side, side)
    assert g.num_ws == 2 * int(math.log2(side)) - 2  # two styles per resolution, as in StyleGAN
    logits = d(x)
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in g.parameters())


def test_conditional_needs_labels():
    g = _g(num_classes=3)
    d = build_discriminator(D_SPEC, (1, 16, 16), 3)
    y = torch.tensor([0, 1, 2])
    assert d(g(torch.randn(3, Z), y), y).shape == (3,)
    with pytest.raises(ValueError, match="labels"):
        g(torch.randn(3, Z))
    with pytest.raises(ValueError, match="labels"):
        d(torch.randn(3, 1, 16, 16))


@pytest.mark.parametrize("side", [28, 4, 48])
def test_resolution_must_be_a_power_of_two(side):
    with pytest.raises(ConfigError, match="power-of-two.*data.resolution"):
        build_generator(G_SPEC, Z, (1, side, side))
    with pytest.raises(ConfigError, match="power-of-two"):
        build_discriminator(D_SPEC, (1, side, side))


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="style_mixing"):
        build_generator({**G_SPEC, "style_mixing": 1.5}, Z, (1, 16, 16))
    with pytest.raises(ConfigError, match="did you mean 'model.generator.mapping_layers'"):
        build_generator({**G_SPEC, "mapping_layer": 3}, Z, (1, 16, 16))


def test_widths_double_per_halving_up_to_max_width():
    g = build_generator({**G_SPEC, "width": 4, "max_width": 16}, Z, (1, 64, 64))
    assert [b.conv1.weight.shape[0] for b in g.blocks] == [16, 16, 16, 8, 4]  # 4, 8, 16, 32, 64 px


def test_equalised_lr_weights_are_unit_normal_and_ignore_model_init():
    g, d = build_models(ModelConfig(latent_dim=Z, generator={**G_SPEC, "width": 16, "max_width": 16},
                                    discriminator=D_SPEC, init="dcgan"), (1, 16, 16))
    synthesis = [p.detach().flatten() for n, p in g.named_parameters()
                 if n.endswith("weight") and not n.startswith("mapping_net")]
    assert 0.9 < float(torch.cat(synthesis).std()) < 1.1  # runtime scaling, not N(0, 0.02)
    mapping = g.mapping_net[0]  # stored 100x larger and scaled 100x smaller: it learns 100x slower
    assert 90 < float(mapping.weight.detach().std()) < 110
    assert mapping.weight_gain == pytest.approx(0.01 / math.sqrt(Z))


def test_modulated_conv_equals_per_sample_demodulated_weights():
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    out = modulated_conv2d(x, weight, styles, demodulate=True)
    for i in range(3):  # the paper's form: w' = w * s, w'' = w' / |w'|, one conv per sample
        w = weight * styles[i][None, :, None, None]
        w = w / (w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
        torch.testing.assert_close(out[i:i + 1], F.conv2d(x[i:i + 1], w, padding=1), rtol=1e-4, atol=1e-5)


def test_eval_mode_is_deterministic_and_draws_no_randomness():
    g = _g().eval()
    z = torch.randn(4, Z)
    w_avg = g.w_avg.clone()
    rng = torch.get_rng_state()
    first, second = g(z), g(z)
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), rng)  # fixed noise buffers, no style mixing
    assert torch.equal(g.w_avg, w_avg)  # w_avg moves in training only


def test_training_tracks_w_avg():
    g = _g(w_avg_beta=0.9).train()
    z = torch.randn(16, Z)
    with torch.no_grad():
        w = g.mapping(z)[:, 0]
        g(z)
    torch.testing.assert_close(g.w_avg, 0.1 * w.mean(0))  # from zero: (1 - beta) * mean(w)


def test_style_mixing_comes_from_the_global_rng():
    g = _g(noise=False, style_mixing=1.0)
    z = torch.randn(4, Z)
    with torch.no_grad():
        plain = g.eval()(z)
        g.train()
        torch.manual_seed(5)
        mixed = g(z)
        torch.manual_seed(5)
        again = g(z)
        g.style_mixing = 0.0
        unmixed = g(z)
    assert torch.equal(mixed, again)  # reproducible from the checkpointed RNG state
    assert not torch.allclose(mixed, plain)  # styles from a second latent replaced some layers
    assert torch.equal(unmixed, plain)  # without mixing and noise, training mode computes the same


def test_noise_modes():
    g = _g().eval()
    for block in g.blocks:  # noise strengths start at 0; give them some so that noise shows
        for conv in (block.conv1, getattr(block, "conv0", None)):
            if conv is not None:
                conv.noise_strength.data.fill_(0.5)
    z = torch.randn(2, Z)
    with torch.no_grad():
        ws = g.mapping(z)
        const, none = g.synthesis(ws, "const"), g.synthesis(ws, "none")
        random = g.synthesis(ws, "random")
    assert torch.equal(g(z), const)
    assert not torch.allclose(const, none) and not torch.allclose(const, random)
    with pytest.raises(ValueError, match="noise must be"):
        g.synthesis(ws, "fixed")
    with pytest.raises(ValueError, match="styles of shape"):
        g.synthesis(ws[:, :2])


def _states(result):
    return load_checkpoint(result.checkpoint)


def test_train_resume_bit_exact_and_sample(tmp_path):
    straight = train(make_cfg(TINY_SG), tmp_path / "straight")
    assert straight.step == 4 and "r1" in straight.last and math.isfinite(straight.last["loss_g"])
    run = tmp_path / "resumed"
    train(make_cfg(TINY_SG, "train.steps=2"), run)
    resumed = train(make_cfg(TINY_SG), run, resume=True)
    (a, meta_a), (b, meta_b) = _states(resumed), _states(straight)
    for key in ("g", "d", "g_ema", "opt_g", "opt_d", "rng"):
        assert_states_equal(a[key], b[key], key)
    assert meta_a["step"] == meta_b["step"] == 4
    assert not torch.equal(a["g"]["w_avg"], torch.zeros_like(a["g"]["w_avg"]))  # tracked and saved
    gen = load_generator(run)
    assert gen.is_ema and isinstance(gen.net, StyleGANGenerator)
    first = gen.sample(4, seed=3)
    assert first.shape == (4, 1, 16, 16)
    assert torch.equal(first, gen.sample(4, seed=3))  # `sample --seed` is reproducible


def test_path_length_regularisation_is_lazy_and_tracks_its_mean():
    off = _g()
    assert off.regularization() is None and "pl_mean" not in off.state_dict()  # off: old layout
    g = _g(pl_weight=2.0, pl_every=2, pl_batch=4).train()
    assert g.regularization() is None  # the first of every 2 G steps skips it
    torch.manual_seed(1)
    reg = g.regularization()
    assert reg is not None and reg.dim() == 0 and reg > 0
    mean_after_one = float(g.pl_mean)
    assert mean_after_one > 0  # lerp from 0 towards the batch's mean length
    reg.backward()
    synth = [p for n, p in g.named_parameters() if n.startswith("blocks.")]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in synth)
    # the penalty is (length - running mean)^2: with the mean pinned at the batch's own mean length it
    # is the variance of the lengths, recomputed here from an explicit Jacobian-vector product
    torch.manual_seed(2)
    g.pl_decay = 1.0
    value = g.path_length_penalty()
    torch.manual_seed(2)
    z = torch.randn(4, Z)
    ws = g._map(z, None).unsqueeze(1).repeat(1, g.num_ws, 1)
    img = g.synthesis(ws)
    noise = torch.randn_like(img) / 16.0  # 1 / sqrt(16 * 16 pixels)
    (grad,) = torch.autograd.grad((img * noise).sum(), ws)
    lengths = grad.square().sum(2).mean(1).sqrt()
    assert float(value.detach()) == pytest.approx(float(lengths.var(unbiased=False)), rel=1e-4)
    assert float(g.pl_mean) == pytest.approx(float(lengths.mean()), rel=1e-5)
    g.eval()
    assert g.regularization() is None  # sampling never regularises
    with pytest.raises(ConfigError, match="path-length"):
        build_generator({**G_SPEC, "pl_every": 0, "pl_weight": 1.0}, Z, (1, 16, 16), None)


def test_path_length_regularisation_trains_and_resumes_bit_exact(tmp_path):
    pl = ["model.generator.pl_weight=2.0", "model.generator.pl_every=2", "model.generator.pl_batch=4"]
    straight = train(make_cfg(TINY_SG, *pl), tmp_path / "straight")
    assert "g_reg" in straight.last and math.isfinite(straight.last["g_reg"])
    run = tmp_path / "resumed"
    train(make_cfg(TINY_SG, *pl, "train.steps=2"), run)
    resumed = train(make_cfg(TINY_SG, *pl), run, resume=True)
    (a, _), (b, _) = _states(resumed), _states(straight)
    for key in ("g", "d", "g_ema", "opt_g", "opt_d", "rng"):
        assert_states_equal(a[key], b[key], key)
    assert int(a["g"]["pl_calls"]) == 4 and float(a["g"]["pl_mean"]) > 0
