"""The noise -> image game ``gan``: G(z[, y]) judged by D as the objective says, for unconditional,
class-conditional and self-conditioned GANs alike. Its phases: ``train.d_steps`` D updates, then one G update
on the last D update's fakes; then the EMA of G. :func:`prepare_noise_to_image` builds it from a validated
config.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from gankit import distributed, streams
from gankit.augment import AdaptiveAugment, AugmentedDiscriminator, DiffAugment
from gankit.clustering import Clusters, cluster_images, prior_rows
from gankit.config import Config, ConfigError, from_dict
from gankit.data import Source, TensorSource, build_dataset
from gankit.data.toy2d import mixture_modes
from gankit.ema import EMA, scheduled_decay
from gankit.games.base import GAMES, Carry, GameBase, Phase, Runtime, Stats, build_data, sample_path
from gankit.health import nearest_neighbour_spread
from gankit.logs import RunLogger
from gankit.models import SelfRegularized, build_models
from gankit.models.registry import DISCRIMINATORS, GENERATORS, declare_roles
from gankit.objectives import Objective, build_objective
from gankit.optim import build_optimizers, cosine_ramp, set_beta2
from gankit.perf import setup as perf_setup
from gankit.run_state import RunState
from gankit.sampling import class_columns, class_labels, default_scale, generate, image_grid, latents, \
    save_image_grid, save_points_plot
from gankit.threads import probe_work


@dataclass
class NoiseToImage(GameBase):
    """G(z[, y]) against D: the networks, the objective and what a conditional G conditions on."""

    name = "gan"
    draws_from_noise = True
    ema: EMA | None = None
    num_classes: int | None = None  # set when G and D are class-conditional (model.conditional)
    augment: DiffAugment | None = None  # train.augment, applied to every image D judges
    clusters: Clusters | None = None  # model.self_condition: the cluster of every training image
    real_std: float | None = None  # per-feature std of one real batch: the diversity yardstick
    real_spread: tuple[int, float] | None = None  # (n, nearest-neighbour spread) of that batch, the other one
    conditioning: str = ""  # what G and D condition on, and why, for the start line

    def __post_init__(self) -> None:
        self.phases = self.build_phases()

    def build_phases(self) -> tuple[Phase, ...]:
        """``train.d_steps`` D updates, then G's (again when the playground changes train.d_steps)."""
        return (Phase("D", "d", self.discriminator_loss, trains=("d",), repeat=self.cfg.train.d_steps,
                      after=self.after_d, counts_images=True),
                Phase("G", "g", self.generator_loss, trains=("g",), frozen=("d",), after=self.after_g))

    @property
    def g(self) -> nn.Module:
        return self.nets["g"]

    @property
    def d(self) -> nn.Module:
        return self.nets["d"]

    @property
    def g_train(self) -> nn.Module:
        """G as the training step runs it: under autocast, channels-last or compiled when ``perf`` says so."""
        return self.g if self.perf.g is None else self.perf.g

    @functools.cached_property
    def judge(self) -> nn.Module:
        """D as the objective sees it: behind DiffAugment (drawing from ``rng``) when train.augment is set."""
        d = self.d if self.perf.d is None else self.perf.d
        return d if not self.augment else AugmentedDiscriminator(d, self.augment, self.rng)

    def labels(self, n: int, per_row: int = 1) -> torch.Tensor | None:
        """Labels for ``n`` samples of a conditional G, one class or cluster per grid row of ``per_row``: the
        classes in turn, or clusters in proportion to their size when self-conditioned; None when
        unconditional."""
        if self.clusters is not None:
            return prior_rows(n, self.clusters.prior, per_row, self.device)
        return class_labels(n, self.num_classes, per_row, self.device)

    # -- the step
    def begin_step(self, run: RunState) -> Carry:
        """Reclustering when due, and what the schedules say for this step (learning rates, Adam's beta2,
        R1/R2 gamma, the EMA's length): functions of the step alone, so resume is exact."""
        assert self.objective is not None
        if self.recluster_due(run.step):
            self.recluster(run.step)
        carry = super().begin_step(run)
        total = run.total
        if total and self.cfg.optim.beta2_final is not None:
            set_beta2(self.cfg.optim, self.optimizers["g"], self.optimizers["d"], run.step, total)
        if total and self.cfg.objective.gamma_final != 1.0:
            self.objective.gamma_scale = cosine_ramp(1.0, self.cfg.objective.gamma_final, run.step, total)
        if total and self.ema is not None and self.cfg.train.ema_decay_final is not None:
            self.ema.decay = scheduled_decay(self.cfg.train.ema_decay, self.cfg.train.ema_decay_final, run.step,
                                             total)
        carry["noise"] = self.objective.noise_std(run.step, run.noise_steps)
        return carry

    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        real, y = self.stream.next()
        return real, y if self.num_classes else None  # a conditional G draws fakes with the real batch's labels

    def discriminator_loss(self, run: RunState, carry: Carry, i: int) -> tuple[torch.Tensor, Stats]:
        """The ``i``-th D update's loss; the last one keeps G's graph of its fakes for G's update."""
        assert self.objective is not None
        real, y = self.real_batch()
        if self.real_std is None:
            self.real_std = float(real.flatten(1).float().std(0).mean())
            self.real_spread = (len(real), nearest_neighbour_spread(real)) if len(real) > 1 else None
        z = self.draw_latents(self.cfg.train.batch_size)
        keep_graph = i == self.cfg.train.d_steps - 1
        with torch.set_grad_enabled(keep_graph):
            fake = self.g_train(z, y)
        loss, stats = self.objective.discriminator_loss(self.judge, real, fake.detach(), y, carry.get("noise", 0.0),
                                                        self.rng, d_step=run.step * self.cfg.train.d_steps + i)
        carry["batch"] = (fake, real, y) if keep_graph else None
        return loss, stats

    def after_d(self, run: RunState, stats: Stats) -> None:
        assert self.objective is not None
        self.objective.after_d_step(self.d)
        adaptive = self.augment.adaptive if self.augment else None
        if adaptive is not None:
            adaptive.observe(stats["ada_r"], self.cfg.train.batch_size,
                             functools.partial(distributed.average_stats, self.dist))
            stats["ada_p"] = torch.tensor(adaptive.p)

    def generator_loss(self, run: RunState, carry: Carry, i: int) -> tuple[torch.Tensor, Stats]:
        """G's loss on the last D update's fakes, or on fresh fakes and a fresh real batch (a G update with no
        D update before it: the playground's button)."""
        assert self.objective is not None
        batch = carry.pop("batch", None)
        if batch is None:
            real, y = self.real_batch()
            batch = (self.g_train(self.draw_latents(self.cfg.train.batch_size), y), real, y)
        fake, real, y = batch
        loss, stats = self.objective.generator_loss(self.judge, fake, y, carry.get("noise", 0.0), self.rng, real=real)
        penalty = self.g.regularization() if isinstance(self.g, SelfRegularized) else None
        if penalty is not None:  # a model's own penalty on its weights (BigGAN's orthogonal regularisation)
            loss = loss + penalty
            stats["g_reg"] = penalty.detach()
        return loss, stats

    def after_g(self, run: RunState, stats: Stats) -> None:
        if self.ema is not None:
            self.ema.update(self.g, run.step + 1)  # the step this update completes

    # -- self-conditioning
    def recluster_due(self, step: int) -> bool:
        """Whether self-conditioning clusters now: at the start, then every model.recluster_every steps
        while a whole interval remains before train.steps."""
        k, every = self.cfg.model.self_condition, self.cfg.model.recluster_every
        if not k:
            return False
        if self.clusters is None:
            return True
        # a reclustering late in a decaying schedule would hand G new clusters it has no steps left to
        # learn, while samples already follow the new clusters' shares
        steps = self.cfg.train.steps
        return every > 0 and step > 0 and step % every == 0 and (steps is None or step + every <= steps)

    def recluster(self, step: int) -> None:
        """Cluster the training images by D's current features; every process gets rank 0's clusters."""
        source = self.stream.source
        assert isinstance(source, TensorSource)
        clusters = None
        if self.dist.is_main:
            clusters = cluster_images(self.d, source, self.cfg.model.self_condition,
                                      self.cfg.train.seed + streams.CLUSTERING + step, self.clusters)
            clusters = (clusters.labels.cpu(), clusters.prior)
        labels, prior = distributed.broadcast_object(self.dist, clusters)
        self.set_clusters(Clusters(labels.to(self.device), prior))

    def set_clusters(self, clusters: Clusters) -> None:
        self.clusters = clusters
        self.stream.source.labels = clusters.labels  # the real batches carry their cluster as label

    # -- sampling
    def sampling_net(self) -> nn.Module:
        """The network to sample from: the EMA (with BatchNorm statistics re-estimated) when kept."""
        if self.ema is None:
            return self.g
        self.ema.recalibrate_norms(*self.recalibration_batches())
        return self.ema.shadow

    def recalibration_batches(self) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """The latents (and labels of a conditional G) the EMA's BatchNorm statistics are re-estimated on."""
        z = latents(8 * 256, self.cfg.model.latent_dim, self.cfg.train.seed + streams.EMA_RECALIBRATION, self.device)
        y = self.labels(len(z))
        return list(z.split(256)), None if y is None else list(y.split(256))

    def write_samples(self, z: torch.Tensor, step: int, run_dir: Path, logger: RunLogger | None) -> None:
        # as `gankit sample` lays out a grid: a column per class, or a row per cluster (2D points cycle
        # through the classes); the PNG at about 128 px per image, as `sample` writes it
        columns = class_columns(self.num_classes, len(z), self_conditioned=self.clusters is not None)
        nrow = columns or self.cfg.log.grid
        per_row = 1 if columns or not self.source.is_image else nrow
        samples = generate(self.sampling_net(), z, labels=self.labels(len(z), per_row))
        path = sample_path(run_dir, step)
        if self.source.is_image:
            save_image_grid(samples, self.cfg.data.normalize, path, nrow, default_scale(samples.shape[-1]))
            if logger is not None:
                logger.image(step, image_grid(samples, self.cfg.data.normalize, nrow), path)
        else:
            save_points_plot(samples, path, self.source.data[:2500].float().cpu(), mixture_modes(self.cfg.data.name))
            if logger is not None:
                logger.image(step, None, path)  # the scatter plot, for the trackers

    def diversity(self, z: torch.Tensor) -> float | None:
        """Per-feature std of G's samples over the real data's: about 1 when healthy, near 0 when collapsed."""
        if not self.real_std:
            return None
        fake = generate(self.g, z, labels=self.labels(len(z)))
        ratio = float(fake.flatten(1).std(0).mean()) / self.real_std
        if self.real_spread is not None and self.real_spread[1] > 0 and len(fake) >= self.real_spread[0]:
            # as many fakes as real samples: the nearest-neighbour distance shrinks with the set size
            ratio = min(ratio, nearest_neighbour_spread(fake[:self.real_spread[0]]) / self.real_spread[1])
        return ratio

    def probe_work(self) -> Any:
        """One training pass of copies of G and D, for the loop's thread tuner (gankit.threads)."""
        return probe_work(self.g, self.d, self.cfg.model.latent_dim, self.source.shape,
                          self.cfg.train.batch_size // self.dist.world_size, self.num_classes, self.device)

    # -- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"g_ema": None, **super().state_dict(),  # None: no EMA, as checkpoints have always said
                "clusters": None if self.clusters is None else self.clusters.state_dict()}

    def meta(self) -> dict[str, Any]:
        adaptive = self.augment.adaptive if self.augment else None
        return {**super().meta(), "data": self.stream.state_dict(), "num_classes": self.num_classes,
                "conditioning": self.conditioning,
                **({"ada": adaptive.state()} if adaptive is not None else {})}

    def load_state_dict(self, state: dict[str, Any], meta: dict[str, Any]) -> None:
        super().load_state_dict(state, {**meta, "data": {"real": meta["data"]}})
        if state.get("clusters") is not None:
            self.set_clusters(Clusters.from_state(state["clusters"], self.device))
        if self.augment and self.augment.adaptive is not None:
            self.augment.adaptive.load_state(meta.get("ada"))


declare_roles("gan", ("generator", GENERATORS, 3), ("discriminator", DISCRIMINATORS, 2))


@GAMES.register("gan")
def prepare_noise_to_image(cfg: Config, runtime: Runtime) -> NoiseToImage:
    """The noise -> image game: G(z[, y]) judged by D, as the objective says."""
    device, dist = runtime.device, runtime.dist
    source = build_dataset(cfg.data)
    requested = cfg.model.self_condition
    if cfg.model.conditional == "auto":  # resolved once against the data: checkpoints hold what it became
        raw = cfg.to_dict()
        cfg = from_dict({**raw, "model": {**raw["model"], **resolve_auto_conditioning(cfg, source)}})
    num_classes = conditional_classes(cfg, source)
    adaptive = AdaptiveAugment(cfg.train.ada_target, cfg.train.ada_kimg * 1000) if cfg.train.ada_target > 0 else None
    augment = DiffAugment(cfg.train.augment, adaptive)
    if augment and not source.is_image:
        raise ConfigError(f"config: train.augment augments images; {cfg.data.name} holds points (set it to '')")
    if (cfg.train.batch_size // dist.world_size) % cfg.model.pack:
        raise ConfigError(f"config: model.pack: the batch of each process ({cfg.train.batch_size // dist.world_size}) "
                          f"must be a multiple of model.pack={cfg.model.pack}")
    g, d = build_models(cfg.model, source.shape, num_classes)
    g.to(device)
    d.to(device)
    distributed.broadcast_modules(dist, g, d)
    objective = build_objective(cfg.objective)
    objective.track_sign = adaptive is not None
    runtime.perf = perf_setup(cfg.perf, device, g, d, objective)  # channels-last converts in place: before the EMA copy
    opt_g, opt_d = build_optimizers(cfg.optim, g, d)
    ema = (EMA(g, cfg.train.ema_decay, cfg.train.ema_start, cfg.train.ema_warmup, cfg.train.ema_rampup)
           if cfg.train.ema_decay > 0 else None)
    if cfg.perf.sync_batchnorm and dist.enabled:  # after the EMA copy: rank 0 alone runs the EMA in train mode
        g, d = distributed.sync_batchnorm(device, g, d)
    data = build_data(cfg, runtime, {"real": source}, cfg.data.name)
    rng, zrng = streams.random_streams(dist, cfg.train.seed, device)  # after the models: their init stays the same
    nets = {"g": g, "d": d, **({"g_ema": ema.shadow} if ema is not None else {})}
    return NoiseToImage(cfg, runtime, nets, {"g": opt_g, "d": opt_d}, data, rng=rng, zrng=zrng, objective=objective,
                        ema=ema, num_classes=num_classes, augment=augment or None,
                        conditioning=describe_conditioning(cfg, num_classes, requested))


MIN_IMAGES_PER_CLUSTER = 20  # model.conditional auto on a small folder: fewer clusters, never near-empty ones


def resolve_auto_conditioning(cfg: Config, source: Source) -> dict[str, Any]:
    """model.conditional auto: the labels where the data has them (model.self_condition then has nothing to do),
    else self-conditioning on model.self_condition clusters where the images are held in memory, as many as
    the data fills with MIN_IMAGES_PER_CLUSTER images each, else a plain unconditional GAN."""
    if has_labels(source):
        return {"conditional": True, "self_condition": 0, "recluster_every": 0}
    k = cfg.model.self_condition
    if isinstance(source, TensorSource) and cfg.model.pack == 1:
        k = min(k, len(source) // MIN_IMAGES_PER_CLUSTER)
    else:  # decoded on the fly, or packed: clustering does not apply
        k = 0
    return {"conditional": False, "self_condition": k if k >= 2 else 0,
            "recluster_every": cfg.model.recluster_every if k >= 2 else 0}


def describe_conditioning(cfg: Config, num_classes: int | None, requested: int) -> str:
    """What G and D condition on, for the start line: classes, clusters, or nothing, and why."""
    if cfg.model.self_condition:
        fewer = (f", fewer than the {requested} asked for: {MIN_IMAGES_PER_CLUSTER} images each"
                 if cfg.model.self_condition < requested else "")
        return f"self-conditioned on {num_classes} clusters of D's features (no labels{fewer})"
    if num_classes:
        return f"conditional on {num_classes} classes (the data's labels)"
    return "unconditional"


def has_labels(source: Source) -> bool:
    return bool(source.num_classes) and (not isinstance(source, TensorSource) or source.labels is not None)


def conditional_classes(cfg: Config, source: Source) -> int | None:
    """The number of classes G and D condition on: the dataset's when model.conditional, the clusters'
    when model.self_condition, else None."""
    if cfg.model.self_condition:
        if cfg.model.conditional:
            raise ConfigError("config: model.self_condition conditions on clusters instead of the dataset's "
                              "labels; set model.conditional: false")
        if not isinstance(source, TensorSource):
            raise ConfigError(f"config: model.self_condition clusters datasets held in memory; {cfg.data.name} "
                              "is decoded on the fly")
        if cfg.model.pack > 1:
            raise ConfigError("config: model.self_condition and model.pack > 1 cannot be combined")
        if len(source) < cfg.model.self_condition:
            raise ConfigError(f"config: model.self_condition: {cfg.model.self_condition} clusters of "
                              f"{len(source)} samples; use fewer clusters")
        return cfg.model.self_condition
    if not cfg.model.conditional:
        return None
    if not has_labels(source):
        raise ConfigError(f"config: model.conditional needs a labelled dataset; {cfg.data.name} has no labels "
                          "(set model.conditional: false)")
    return source.num_classes
