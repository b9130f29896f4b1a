"""configs/seeds/seed000-003 reproduce their tutorials (/work/shared/seeds): each tutorial's networks
are written below in plain PyTorch, as its code has them, and gankit must build the same layers,
with the same weights from the same seed (PyTorch's default init) and the same outputs; the
training settings (loss, batch, optimiser, D steps, no EMA) are checked on what gankit builds."""
from __future__ import annotations

from conftest import step_game

from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from gankit.config import load
from gankit.models import build_models
from gankit.objectives import NonSaturating, build_objective
from gankit.optim import build_optimizers
from gankit.train import prepare

SEEDS = Path(__file__).resolve().parents[1] / "configs" / "seeds"


# --- the tutorials' networks, layer by layer as published; only the final nn.Sigmoid is left out
# (gankit's D outputs logits and its loss applies the sigmoid inside the cross-entropy)

def seed000_g() -> nn.Module:
    return nn.Sequential(nn.Linear(100, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                         nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 28 * 28), nn.Tanh())


def seed000_d() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256),
                         nn.LeakyReLU(0.2), nn.Linear(256, 1))


def seed001_g() -> nn.Module:
    return nn.Sequential(nn.Linear(128, 256), nn.ReLU(inplace=True),
                         nn.Linear(256, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                         nn.Linear(512, 1024), nn.BatchNorm1d(1024), nn.ReLU(inplace=True),
                         nn.Linear(1024, 2048), nn.BatchNorm1d(2048), nn.ReLU(inplace=True),
                         nn.Linear(2048, 3 * 32 * 32), nn.Tanh())


def seed001_d() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 1024), nn.ReLU(inplace=True),
                         nn.Linear(1024, 512), nn.ReLU(inplace=True), nn.Linear(512, 256), nn.ReLU(inplace=True),
                         nn.Linear(256, 1))


def seed002_g() -> nn.Module:
    return nn.Sequential(nn.Linear(100, 256), nn.BatchNorm1d(256), nn.ReLU(),
                         nn.Linear(256, 512), nn.BatchNorm1d(512), nn.ReLU(),
                         nn.Linear(512, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
                         nn.Linear(1024, 784), nn.Tanh())


def seed002_d() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
                         nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
                         nn.Conv2d(128, 256, 4, 2, 1), nn.BatchNorm2d(256), nn.LeakyReLU(0.2),
                         nn.Conv2d(256, 1, 4, 1, 0))


def seed003_g(latent_dim: int = 100, ngf: int = 64, img_channels: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Unflatten(1, (latent_dim, 1, 1)),  # the tutorial's z.view(-1, 100, 1, 1)
        nn.ConvTranspose2d(latent_dim, ngf * 8, 4, 1, 0), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, img_channels, 4, 2, 1), nn.Tanh())


def seed003_d(ndf: int = 64, img_channels: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(img_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0))


def pad_to_32(x: torch.Tensor) -> torch.Tensor:
    """seed002's one deviation: its 32 px D sees the 28 px digits zero-padded to 32 px."""
    return F.pad(x, (2, 2, 2, 2))


# preset -> (tutorial G, tutorial D, what D is fed, data shape, facts of the tutorial's training code)
PRESETS: dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module], Callable, tuple[int, ...], dict]] = {
    "seed000_mlp_mnist": (seed000_g, seed000_d, lambda x: x, (1, 28, 28), dict(
        latent_dim=100, batch_size=64, d_steps=1, lr=2e-4, betas=(0.5, 0.999), steps=46_900, grid=4)),
    "seed001_vanilla_cifar10": (seed001_g, seed001_d, lambda x: x, (3, 32, 32), dict(
        latent_dim=128, batch_size=512, d_steps=4, lr=2e-3, betas=(0.5, 0.999), steps=12_250)),
    "seed002_hybrid_mnist": (seed002_g, seed002_d, pad_to_32, (1, 28, 28), dict(
        latent_dim=100, batch_size=64, d_steps=1, lr=2e-4, betas=(0.5, 0.999), steps=93_800)),
    "seed003_dcgan64": (seed003_g, seed003_d, lambda x: x, (3, 64, 64), dict(
        latent_dim=100, batch_size=128, d_steps=1, lr=2e-4, betas=(0.5, 0.999))),
}
DATA = {"seed000_mlp_mnist": ("mnist10k", None, None), "seed001_vanilla_cifar10": ("cifar10", None, None),
        "seed002_hybrid_mnist": ("mnist10k", None, None), "seed003_dcgan64": ("mnist10k", 64, 3)}


def _built(name: str) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """(gankit G, gankit D, tutorial G, tutorial D), each pair built from torch seed 0 in the same order."""
    g_fn, d_fn, _, shape, _ = PRESETS[name]
    cfg = load(SEEDS / f"{name}.yaml")
    torch.manual_seed(0)
    g, d = build_models(cfg.model, shape)
    torch.manual_seed(0)
    tg, td = g_fn(), d_fn()
    return g, d, tg, td


def _param_shapes(net: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in net.parameters()]


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_builds_the_tutorials_layers_with_its_default_init(name):
    g, d, tg, td = _built(name)
    for ours, theirs in ((g, tg), (d, td)):
        assert _param_shapes(ours) == _param_shapes(theirs)  # same layers, sizes and biases, in order
        assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
        # PyTorch's default init drawn in the same order: bit-identical weights, so no init scheme ran
        for p, q in zip(ours.parameters(), theirs.parameters()):
            assert torch.equal(p, q)
        # same activations (type and slope), same norms, no dropout the tutorial lacks
        kinds = lambda net: [(type(m).__name__, getattr(m, "negative_slope", None)) for m in net.modules()  # noqa: E731
                             if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.BatchNorm1d, nn.BatchNorm2d,
                                               nn.Dropout, nn.Tanh))]
        assert kinds(ours) == kinds(theirs)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_networks_compute_the_tutorials_function(name):
    g, d, tg, td = _built(name)
    _, _, feed, shape, facts = PRESETS[name]
    z = torch.randn(6, facts["latent_dim"], generator=torch.Generator().manual_seed(1))
    for mode in ("train", "eval"):  # BatchNorm on batch statistics, then on running statistics
        for net in (g, d, tg, td):
            net.train(mode == "train")
        with torch.no_grad():
            fake = g(z)
            assert fake.shape == (6, *shape)
            torch.testing.assert_close(fake, tg(z).view(6, *shape))
            # the tutorial's D ends in a Sigmoid: its probabilities are sigmoid(gankit's logits)
            torch.testing.assert_close(torch.sigmoid(d(fake)), torch.sigmoid(td(feed(fake)).view(-1)))


def test_seed002_tutorial_d_cannot_run_on_28px_digits_unpadded():
    with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
        seed002_d()(torch.zeros(2, 1, 28, 28))


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_trains_as_the_tutorial_does(name):
    facts = PRESETS[name][4]
    cfg = load(SEEDS / f"{name}.yaml")
    assert (cfg.data.name, cfg.data.resolution, cfg.data.channels) == DATA[name]
    assert cfg.data.normalize == "symmetric"  # ToTensor + Normalize(0.5, 0.5)
    assert cfg.model.latent_dim == facts["latent_dim"]
    assert cfg.model.init == "default" and cfg.model.pack == 1 and not cfg.model.conditional
    objective = build_objective(cfg.objective)
    assert type(objective) is NonSaturating  # BCE(D(G(z)), 1), not the saturating minimax
    assert cfg.objective.label_smoothing == 0 and cfg.objective.instance_noise == 0
    assert cfg.objective.r1_gamma == 0 and cfg.objective.r2_gamma == 0
    assert cfg.train.batch_size == facts["batch_size"] and cfg.train.d_steps == facts["d_steps"]
    assert cfg.train.ema_decay == 0 and cfg.train.augment == ""
    if "steps" in facts:
        assert cfg.train.steps == facts["steps"]
    if "grid" in facts:
        assert cfg.log.grid == facts["grid"]
    g, d = build_models(cfg.model, PRESETS[name][3])
    for opt in build_optimizers(cfg.optim, g, d):
        assert type(opt) is torch.optim.Adam
        group = opt.param_groups[0]
        assert group["lr"] == pytest.approx(facts["lr"]) and tuple(group["betas"]) == facts["betas"]
        assert group["eps"] == 1e-8 and group["weight_decay"] == 0  # torch.optim.Adam's defaults
    assert cfg.optim.schedule == "constant"
    assert cfg.perf.amp == "fp32" and cfg.health.rollbacks == 0  # float32 on any device; no lr-lowering rollback


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_losses_are_the_tutorials_bce(name):
    g, d, _, td = _built(name)
    _, _, feed, shape, facts = PRESETS[name]
    objective = build_objective(load(SEEDS / f"{name}.yaml").objective)
    gen = torch.Generator().manual_seed(2)
    real = torch.rand(8, *shape, generator=gen) * 2 - 1
    with torch.no_grad():
        fake = g(torch.randn(8, facts["latent_dim"], generator=gen))
    bce = nn.BCELoss()
    ones, zeros = torch.ones(8, 1), torch.zeros(8, 1)
    prob = lambda x: torch.sigmoid(td(feed(x)).view(-1, 1))  # noqa: E731  (the tutorial's D with its Sigmoid)
    loss_d, _ = objective.discriminator_loss(d, real, fake)
    loss_g, _ = objective.generator_loss(d, fake)
    # seed001 averages D's two terms; Adam's step is invariant to that constant factor
    torch.testing.assert_close(loss_d, bce(prob(real), ones) + bce(prob(fake), zeros))
    torch.testing.assert_close(loss_g, bce(prob(fake), ones))


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_trains_a_few_steps(name):
    overrides = ["data.limit=64", "train.batch_size=16", "train.device=cpu"]
    if name == "seed001_vanilla_cifar10":  # no CIFAR-10 files offline: CIFAR-shaped digits
        overrides += ["data.name=mnist10k", "data.channels=3", "data.resolution=32"]
    trainer = prepare(load(SEEDS / f"{name}.yaml", overrides))
    before = [p.detach().clone() for p in trainer.g.parameters()]
    losses = [step_game(trainer, 3) for _ in range(3)]
    assert all(torch.isfinite(s["loss_d"]) and torch.isfinite(s["loss_g"]) for s in losses)
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.g.parameters()))
    assert trainer.ema is None
