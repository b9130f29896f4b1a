"""The BiGAN / ALI game ``bigan`` (Donahue et al. 2017, "Adversarial Feature Learning"; Dumoulin et al. 2017,
"Adversarially Learned Inference"): an encoder E maps images to latents, G latents to images, and a joint D
judges pairs: real (x, E(x)) against fake (G(z), z). Its phases: ``train.d_steps`` D updates with the
objective's discriminator loss on the pairs, then one update of G and E together (one optimizer) on the
last D update's pairs: G's loss on the fake pairs plus the same loss with the labels flipped on the real
ones, so E learns to make (x, E(x)) look generated. At the optimum E inverts G: G(E(x)) reconstructs x.
``game.lambda_recon`` adds ALICE's explicit cycle term |G(E(x)) - x| (Li et al. 2017), which reaches
reconstructions far sooner than the adversarial game alone.

A pair reaches the objective as one tensor [x flattened | z] (:class:`PairJudge` unpacks it), so its
penalties act on the pair as D's input: R1 on real pairs, WGAN-GP's interpolates between pairs, instance
noise on both parts. On mnist10k the game trains on the first 9,000 digits of gankit's fixed order and
reconstructs held-out ones in its grids (the dataset's registered hold-out).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from gankit.config import Config, ConfigError
from gankit.data import TensorSource, build_dataset, to_model_range
from gankit.data.registry import dataset_facts
from gankit.games.base import GAMES, Carry, GameBase, Phase, Runtime, Stats, assemble, refuse, sample_path
from gankit.logs import RunLogger
from gankit.models import GENERATORS, build_generator
from gankit.models.bigan import ENCODERS, JOINT_DISCRIMINATORS, build_encoder, build_joint_discriminator
from gankit.models.inference import run_eval
from gankit.models.registry import declare_roles
from gankit.objectives import Objective, build_objective
from gankit.run_state import RunState
from gankit.sampling import default_scale, generate, image_grid, save_image_grid

# Objectives symmetric under swapping real and fake while negating D: for them, G's loss on the real pairs
# "with the labels flipped" is G's term of the negated logits (ns: -log(1 - D(x, E(x))); minimax: log D(x, E(x));
# hinge and the critics: E[D(x, E(x))]). The relativistic ones (rals, rpgan) weigh the real pairs against the
# fakes in G's loss already. lsgan is not symmetric (its fake target is 0, not -1): refused.
FLIPPED_BY_NEGATION = ("ns", "minimax", "hinge", "wgan", "wgan-gp")


def pair(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """One (image, latent) pair per row: [x flattened | z]."""
    return torch.cat([x.flatten(1), z], 1)


class PairJudge(nn.Module):
    """The joint D as the objective calls it, ``judge(pairs, y=None)`` on :func:`pair` rows."""

    def __init__(self, d: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.d, self.shape, self.size = d, tuple(shape), math.prod(shape)

    def forward(self, pairs: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.d(pairs[:, :self.size].unflatten(1, self.shape), pairs[:, self.size:])


def encode(e: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """E in eval mode (BatchNorm's running statistics) over model-range images ``x``, in batches."""
    return run_eval(e, x, batch_size)


def reconstruct(g: nn.Module, e: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """G(E(x)) in eval mode, on the CPU in the model's range."""
    return generate(g, encode(e, x, batch_size), batch_size)


def recon_rows(x: torch.Tensor, rec: torch.Tensor, per_row: int) -> torch.Tensor:
    """Rows of x, each followed by the row of its reconstructions."""
    pairs = torch.stack([x.view(-1, per_row, *x.shape[1:]), rec.view(-1, per_row, *rec.shape[1:])], 1)
    return pairs.flatten(0, 2)


def check_settings(cfg: Config) -> None:
    """What the bigan game does not do (yet), refused before anything is built."""
    problems = {
        "train.ema_decay": (cfg.train.ema_decay > 0, "no EMA of G (set 0)"),
        "train.augment": (bool(cfg.train.augment), "no DiffAugment (set '')"),
        "eval.every": (cfg.eval.every > 0, "no in-training evaluation; measure the run with `gankit eval RUN`"),
        "model.conditional": (cfg.model.conditional is not False or cfg.model.self_condition > 0,
                              "no class labels (set model.conditional: false)"),
        "model.pack": (cfg.model.pack != 1, "no packing (set 1)"),
        "perf.amp": (cfg.perf.amp not in ("auto", "fp32"), "float32 (auto resolves to fp32 for it)"),
        "perf.compile": (cfg.perf.compile, "eager networks (set false)"),
        "perf.sync_batchnorm": (cfg.perf.sync_batchnorm, "per-process BatchNorm (set false)"),
        "optim.beta2_final": (cfg.optim.beta2_final is not None, "a constant Adam beta2 (set null)"),
        "objective.gamma_final": (cfg.objective.gamma_final != 1.0, "constant penalties (set 1)"),
    }
    refuse(cfg, problems)


def check_objective(objective: Objective, name: str) -> None:
    if not objective.needs_real_in_g and name not in FLIPPED_BY_NEGATION:
        raise ConfigError(f"config: objective.name: the bigan game trains E with G's loss on the real pairs with "
                          f"the labels flipped, which {name} does not define; use ns, minimax, hinge, wgan, "
                          "wgan-gp, rals or rpgan")


@dataclass
class BiGAN(GameBase):
    """G, E and the joint D; ``recon``: the uint8 images each grid reconstructs (held-out digits on mnist10k)."""

    name = "bigan"
    draws_from_noise = True
    recon: torch.Tensor | None = None
    real_std: float | None = None  # per-feature std of one real batch: the diversity yardstick

    def __post_init__(self) -> None:
        self.judge = PairJudge(self.nets["d"], self.source.shape)
        self.phases = (
            Phase("D", "d", self.discriminator_loss, trains=("d",), repeat=self.cfg.train.d_steps,
                  after=self.after_d, counts_images=True),
            Phase("G", "g", self.generator_loss, trains=("g", "e"), frozen=("d",)))

    def pairs(self, grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(fake pairs (G(z), z), real pairs (x, E(x))) of a fresh batch; ``grad``: keep G's and E's graphs."""
        real, _ = self.stream.next()
        if self.real_std is None:
            self.real_std = float(real.flatten(1).float().std(0).mean())
        z = self.draw_latents(self.cfg.train.batch_size)
        with torch.set_grad_enabled(grad):
            return pair(self.nets["g"](z), z), pair(real, self.nets["e"](real))

    # -- the step
    def begin_step(self, run: RunState) -> Carry:
        assert self.objective is not None
        carry = super().begin_step(run)
        carry["noise"] = self.objective.noise_std(run.step, run.noise_steps)
        return carry

    def discriminator_loss(self, run: RunState, carry: Carry, i: int) -> tuple[torch.Tensor, Stats]:
        """The ``i``-th D update's loss; the last one keeps G's and E's graphs for their update."""
        assert self.objective is not None
        keep = i == self.cfg.train.d_steps - 1
        fake, real = self.pairs(keep)
        carry["pairs"] = (fake, real) if keep else None
        return self.objective.discriminator_loss(self.judge, real.detach(), fake.detach(), None, carry["noise"],
                                                 self.rng, d_step=run.step * self.cfg.train.d_steps + i)

    def after_d(self, run: RunState, stats: Stats) -> None:
        assert self.objective is not None
        self.objective.after_d_step(self.nets["d"])

    def generator_loss(self, run: RunState, carry: Carry, i: int) -> tuple[torch.Tensor, Stats]:
        """G's loss on the fake pairs plus, for E, the flipped loss on the real pairs (the last D update's
        pairs, or fresh ones for a G update alone: the playground's button)."""
        assert self.objective is not None
        fake, real = carry.pop("pairs", None) or self.pairs(True)
        noise = carry.get("noise", 0.0)
        if self.objective.needs_real_in_g:  # relativistic: the real pairs are in G's loss, E's graph with them
            loss, stats = self.objective.generator_loss(self.judge, fake, None, noise, self.rng, real=real)
        else:
            loss, stats = self.objective.generator_loss(self.judge, fake, None, noise, self.rng)
            noisy = real if noise <= 0 else \
                real + noise * torch.randn(real.shape, generator=self.rng, device=real.device, dtype=real.dtype)
            flipped = self.objective.g_term(-self.judge(noisy))
            loss, stats = loss + flipped, {**stats, "loss_e": flipped.detach()}
        if self.cfg.game.lambda_recon > 0:  # ALICE's cycle term on the real pairs: G(E(x)) against x
            x, code = real[:, :self.judge.size], real[:, self.judge.size:]
            l1 = (self.nets["g"](code).flatten(1) - x).abs().mean()
            loss, stats = loss + self.cfg.game.lambda_recon * l1, {**stats, "recon_l1": l1.detach()}
        return loss, stats

    # -- sampling
    def write_samples(self, z: torch.Tensor, step: int, run_dir: Path, logger: RunLogger | None) -> None:
        """G's samples of ``z``, then rows of images x each followed by its reconstructions G(E(x))."""
        k, normalize = self.cfg.log.grid, self.cfg.data.normalize
        assert self.recon is not None
        x = to_model_range(self.recon.to(self.device), normalize)
        rows = recon_rows(x.cpu(), reconstruct(self.nets["g"], self.nets["e"], x), k)
        images = torch.cat([generate(self.nets["g"], z), rows])
        path = sample_path(run_dir, step)
        save_image_grid(images, normalize, path, k, default_scale(images.shape[-1]))
        if logger is not None:
            logger.image(step, image_grid(images, normalize, k), path)

    def diversity(self, z: torch.Tensor) -> float | None:
        """Per-feature std of G's samples over the real data's: about 1 when healthy, near 0 when collapsed."""
        if not self.real_std:
            return None
        return float(generate(self.nets["g"], z).flatten(1).std(0).mean()) / self.real_std



def training_images(cfg: Config) -> tuple[TensorSource, torch.Tensor]:
    """The images to train on and the uint8 ones each grid reconstructs: where the dataset holds some out
    (mnist10k: the last 1,000 digits of gankit's fixed order) the rest and held-out ones, else the dataset
    and its first images."""
    held_out = dataset_facts(cfg.data.name).holdout
    k = cfg.log.grid
    shown = k * max(1, k // 2)
    if held_out:
        full = build_dataset(dataclasses.replace(cfg.data, limit=None))
        assert isinstance(full, TensorSource) and full.labels is not None
        n = len(full) - held_out if cfg.data.limit is None else min(cfg.data.limit, len(full) - held_out)
        source = TensorSource(full.data[:n], full.labels[:n], full.normalize, full.num_classes)
        return source, full.data[len(full) - held_out:][:shown]
    source = build_dataset(cfg.data)
    if not isinstance(source, TensorSource) or not source.is_image:
        what = "holds points" if not source.is_image else "is decoded on the fly"
        raise ConfigError(f"config: data.name: the bigan game trains on images held in memory; {cfg.data.name} "
                          f"{what}")
    return source, source.data[:shown]


declare_roles("bigan", ("generator", GENERATORS, 3), ("discriminator", JOINT_DISCRIMINATORS, 2),
              ("encoder", ENCODERS, 2))


@GAMES.register("bigan")
def prepare_bigan(cfg: Config, runtime: Runtime) -> BiGAN:
    """G(z) and E(x) against the joint D(x, z), as the objective says; one optimizer over G and E."""
    check_settings(cfg)
    objective = build_objective(cfg.objective)
    check_objective(objective, cfg.objective.name)
    source, recon = training_images(cfg)
    shape, latent = source.shape, cfg.model.latent_dim
    nets = {"g": build_generator(cfg.model.generator, latent, shape),
            "d": build_joint_discriminator(cfg.model.discriminator, shape, latent),
            "e": build_encoder(cfg.model.encoder, shape, latent)}
    return assemble(BiGAN, cfg, runtime, nets, (("g", "e"), ("d",)), {"real": source}, cfg.data.name,
                    objective=objective, recon=recon)


# -- a trained run's encoder (`gankit encode`)
@dataclass
class LoadedBiGAN:
    """G and E of a bigan checkpoint (eval mode), rebuilt from its config alone."""

    g: nn.Module
    e: nn.Module
    cfg: Config
    shape: tuple[int, int, int]
    step: int

    def encode(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Latents E(x) (float32, CPU) of uint8 images N x C x H x W."""
        x = to_model_range(images, self.cfg.data.normalize).to(next(self.e.parameters()).device)
        return encode(self.e, x, batch_size).float().cpu()

    def write_grid(self, images: torch.Tensor, out: str | Path, per_row: int = 8) -> Path:
        """Rows of up to ``per_row`` of the first 64 ``images``, each row followed by its reconstructions."""
        n = len(images) if len(images) <= per_row else min(len(images), 64) // per_row * per_row
        per_row = min(per_row, n)
        x = to_model_range(images[:n], self.cfg.data.normalize).to(next(self.e.parameters()).device)
        rows = recon_rows(x.cpu(), reconstruct(self.g, self.e, x), per_row)
        return save_image_grid(rows, self.cfg.data.normalize, out, per_row, default_scale(self.shape[-1]))


def load_bigan(path: str | Path, device: torch.device) -> LoadedBiGAN:
    """G and E of a bigan run directory or checkpoint file (safetensors; never unpickled)."""
    from gankit.checkpoint import CheckpointError, load_checkpoint, resolve
    from gankit.config import from_dict
    from gankit.sampling import check_finite, load_weights

    file = resolve(path)
    state, meta = load_checkpoint(file)
    game = meta.get("game", "gan") if isinstance(meta, dict) else None
    if game != "bigan":
        raise CheckpointError(f"{path} is a {game} run; encode needs a bigan run (game.name: bigan), whose "
                              "encoder maps images to latents")
    cfg = from_dict(meta["config"])
    shape = tuple(meta["data_shape"])
    nets = {"g": build_generator(cfg.model.generator, cfg.model.latent_dim, shape),
            "e": build_encoder(cfg.model.encoder, shape, cfg.model.latent_dim)}
    for name, net in nets.items():
        what = {"g": "generator", "e": "encoder"}[name]
        load_weights(net, state[name], what)
        check_finite(net, path, what)
        net.to(device).eval()
    return LoadedBiGAN(nets["g"], nets["e"], cfg, shape, int(meta["step"]))  # type: ignore[arg-type]
