"""configs/seeds/seed004_dcgan_mnist.yaml is the tutorial's DCGAN lab (benchmarks/seed004_tutorial.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from gankit.config import load
from gankit.train import prepare

ROOT = Path(__file__).resolve().parent.parent


def _tutorial():
    spec = importlib.util.spec_from_file_location("seed004_tutorial", ROOT / "benchmarks" / "seed004_tutorial.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_the_preset_builds_the_tutorials_networks_with_its_choices():
    tutorial = _tutorial()
    trainer = prepare(load(ROOT / "configs/seeds/seed004_dcgan_mnist.yaml", ["train.threads=1"]))
    cfg = trainer.cfg
    # D: unpadded 5x5 convs, 28 -> 24 -> 12 -> 8 -> 4, fc 64*4*4 -> 1024 -> 1: the same parameters
    assert _count(trainer.d) == _count(tutorial.Discriminator()) == 1_102_721
    # G: the tutorial's biases before BatchNorm have no effect (BatchNorm subtracts the mean); the rest match
    biases_before_norm = 1024 + 128 * 7 * 7 + 64
    assert _count(trainer.g) == _count(tutorial.Generator(100)) - biases_before_norm
    assert cfg.model.init == "default" and cfg.model.latent_dim == 100
    assert cfg.objective.name == "ns" and cfg.train.batch_size == 128 and cfg.train.d_steps == 1
    assert cfg.train.ema_decay == 0.0 and cfg.data.normalize == "unit"
    assert (cfg.optim.name, cfg.optim.lr_g, cfg.optim.lr_d) == ("adam", 2e-4, 2e-4)
    assert cfg.optim.betas_g == [0.5, 0.999] == cfg.optim.betas_d
    x = torch.rand(3, 1, 28, 28)
    assert trainer.d(x).shape == (3,) and trainer.g(torch.randn(3, 100)).shape == (3, 1, 28, 28)
    assert float(trainer.g(torch.randn(3, 100)).detach().min()) >= 0.0  # sigmoid output for [0, 1] pixels


def test_default_init_is_pytorchs_own():
    """model.init default leaves every layer as PyTorch initialised it (the tutorial calls no weights_init)."""
    torch.manual_seed(0)
    trainer = prepare(load(ROOT / "configs/seeds/seed004_dcgan_mnist.yaml", ["train.threads=1"]))
    first = trainer.d.features[0]
    bound = 1 / (1 * 5 * 5) ** 0.5  # kaiming_uniform(a=sqrt(5)) on a 1 x 5 x 5 fan-in
    assert float(first.weight.abs().max()) <= bound and float(first.weight.std()) > 0.5 * bound / 3 ** 0.5
