"""The noise -> image game ``gan``: G(z[, y]) judged by D as the objective says, for unconditional,
class-conditional and self-conditioned GANs alike. :class:`Trainer` is everything one step touches and what
a checkpoint holds; :func:`prepare_gan` builds it from a validated config. The loop (gankit.train) drives it
through the :class:`gankit.game.Game` protocol, as it drives the translation games.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from gankit import __version__, distributed, streams
from gankit.augment import AdaptiveAugment, AugmentedDiscriminator, DiffAugment
from gankit.checkpoint import CheckpointError
from gankit.clustering import Clusters, cluster_images, prior_rows
from gankit.config import Config, ConfigError, from_dict
from gankit.data import BatchStream, Source, TensorSource, build_dataset
from gankit.distributed import Dist
from gankit.data.toy2d import mixture_modes
from gankit.ema import EMA, scheduled_decay
from gankit.game import GAMES
from gankit.health import nearest_neighbour_spread
from gankit.logs import RunLogger
from gankit.models import build_models
from gankit.objectives import Objective, build_objective
from gankit.optim import build_optimizers, cosine_ramp, lr_factor, set_beta2, set_learning_rates
from gankit.perf import Perf, backward_step
from gankit.perf import setup as perf_setup
from gankit.sampling import (class_columns, class_labels, default_scale, generate, image_grid, latents, load_weights,
                             save_image_grid, save_points_plot)
from gankit.threads import fixed_threads


@dataclass
class Trainer:
    """Everything a step touches. Built by :func:`prepare_gan` (through gankit.train.prepare); ``state_dict``
    is what a checkpoint holds."""

    cfg: Config
    device: torch.device
    source: Source
    g: nn.Module
    d: nn.Module
    ema: EMA | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    objective: Objective
    stream: BatchStream
    rng: torch.Generator  # latents and instance noise
    step: int = 0
    images_seen: int = 0
    lr_scale: float = 1.0  # lowered by divergence rollbacks; kept in checkpoints
    rollbacks: int = 0
    best_fid: float = math.inf
    real_std: float | None = None  # per-feature std of one real batch: the diversity yardstick
    real_spread: tuple[int, float] | None = None  # (n, nearest-neighbour spread) of that batch, the other one
    num_classes: int | None = None  # set when G and D are class-conditional (model.conditional)
    augment: DiffAugment | None = None  # train.augment, applied to every image D judges
    dist: Dist = field(default_factory=Dist)  # this process's rank in a multi-process run (gankit.distributed)
    perf: Perf = field(default_factory=Perf)  # resolved perf settings, training forwards, fp16 scalers
    zrng: torch.Generator | None = None  # multi-process: the shared latent stream (else ``rng`` draws z)
    clusters: Clusters | None = None  # model.self_condition: the cluster of every training image
    auto_threads: bool = False  # train.threads auto on the CPU: chosen by measurement at the start
    saved_threads: int | None = None  # the thread count a resumed checkpoint trained with
    noise_horizon: int | None = None  # steps over which instance noise anneals: fixed at the run's start
    conditioning: str = ""  # what G and D condition on, and why, for the start line

    def labels(self, n: int, per_row: int = 1) -> torch.Tensor | None:
        """Labels for ``n`` samples of a conditional G, one class or cluster per grid row of ``per_row``: the
        classes in turn, or clusters in proportion to their size when self-conditioned; None when
        unconditional."""
        if self.clusters is not None:
            return prior_rows(n, self.clusters.prior, per_row, self.device)
        return class_labels(n, self.num_classes, per_row, self.device)

    def recluster_due(self) -> bool:
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
        return (every > 0 and self.step > 0 and self.step % every == 0
                and (steps is None or self.step + every <= steps))

    def before_step(self) -> None:
        if self.recluster_due():
            self.recluster()

    @property
    def logistic_d(self) -> bool:
        return self.objective.logistic_d

    def recluster(self) -> None:
        """Cluster the training images by D's current features; every process gets rank 0's clusters."""
        source = self.stream.source
        assert isinstance(source, TensorSource)
        clusters = None
        if self.dist.is_main:
            clusters = cluster_images(self.d, source, self.cfg.model.self_condition,
                                      self.cfg.train.seed + streams.CLUSTERING + self.step, self.clusters)
            clusters = (clusters.labels.cpu(), clusters.prior)
        labels, prior = distributed.broadcast_object(self.dist, clusters)
        self.set_clusters(Clusters(labels.to(self.device), prior))

    def set_clusters(self, clusters: Clusters) -> None:
        self.clusters = clusters
        self.stream.source.labels = clusters.labels  # the real batches carry their cluster as label

    @property
    def g_train(self) -> nn.Module:
        """G as the training step runs it: under autocast, channels-last or compiled when ``perf`` says so."""
        return self.g if self.perf.g is None else self.perf.g

    @property
    def d_train(self) -> nn.Module:
        return self.d if self.perf.d is None else self.perf.d

    @functools.cached_property
    def judge(self) -> nn.Module:
        """D as the objective sees it: behind DiffAugment (drawing from ``rng``) when train.augment is set."""
        return self.d_train if not self.augment else AugmentedDiscriminator(self.d_train, self.augment, self.rng)

    def draw_latents(self, n: int) -> torch.Tensor:
        """The latents of a global batch of ``n``; a process of a multi-process run keeps its slice."""
        if self.zrng is None:
            return torch.randn(n, self.cfg.model.latent_dim, generator=self.rng, device=self.device)
        z = torch.randn(n, self.cfg.model.latent_dim, generator=self.zrng, device=self.device)
        b = n // self.dist.world_size
        return z[self.dist.rank * b:(self.dist.rank + 1) * b]

    def backward_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> torch.Tensor | None:
        """Backward, gradients averaged over processes, optimizer step (fp16: through its scaler); returns the
        gradients' total norm with log.grad_norms, else None."""
        scaler = self.perf.scalers.get("d" if opt is self.opt_d else "g")
        return backward_step(loss, opt, scaler, functools.partial(distributed.average_gradients, self.dist),
                             grad_norm=self.cfg.log.grad_norms)

    def train_step(self, total: int | None, between: Callable[[], None] | None = None) -> dict[str, torch.Tensor]:
        """``d_steps`` D updates, then one G update on the last D step's fakes. ``between`` is called after
        each D update (the playground answers its page there while a long step runs; it may raise to
        abandon the step)."""
        noise = self.begin_step(total)
        stats: dict[str, torch.Tensor] = {}
        for i in range(self.cfg.train.d_steps):
            # keep only the graph G reuses: the last D step's fakes
            batch, d_stats = self.discriminator_step(noise, i, keep_graph=i == self.cfg.train.d_steps - 1)
            stats.update(d_stats)  # the last D step's values; a lazy penalty's from the step that ran it
            if between is not None:
                between()
        stats.update(self.generator_step(noise, batch))
        return stats

    def begin_step(self, total: int | None) -> float:
        """The instance-noise std of this step; sets what the schedules say for this step (learning rates,
        Adam's beta2, R1/R2 gamma, the EMA's length): functions of the step alone, so resume is exact."""
        if self.cfg.optim.schedule != "constant":
            self.set_lr_scale(self.lr_scale, lr_factor(self.cfg.optim, self.step, total))
        if total and self.cfg.optim.beta2_final is not None:
            set_beta2(self.cfg.optim, self.opt_g, self.opt_d, self.step, total)
        if total and self.cfg.objective.gamma_final != 1.0:
            self.objective.gamma_scale = cosine_ramp(1.0, self.cfg.objective.gamma_final, self.step, total)
        if total and self.ema is not None and self.cfg.train.ema_decay_final is not None:
            self.ema.decay = scheduled_decay(self.cfg.train.ema_decay, self.cfg.train.ema_decay_final, self.step, total)
        return self.objective.noise_std(self.step, self.noise_horizon or total or 0)

    def discriminator_step(self, noise: float, i: int = 0, keep_graph: bool = False
                           ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None], dict[str, torch.Tensor]]:
        """The ``i``-th D update of this step; returns (fake, real, y), fake with G's graph when ``keep_graph``."""
        real, y = self.stream.next()
        y = y if self.num_classes else None  # a conditional G draws its fakes with the real batch's labels
        if self.real_std is None:
            self.real_std = float(real.flatten(1).float().std(0).mean())
            self.real_spread = (len(real), nearest_neighbour_spread(real)) if len(real) > 1 else None
        z = self.draw_latents(self.cfg.train.batch_size)
        self.d.requires_grad_(True)
        with torch.set_grad_enabled(keep_graph):
            fake = self.g_train(z, y)
        loss_d, stats = self.objective.discriminator_loss(self.judge, real, fake.detach(), y, noise, self.rng,
                                                          d_step=self.step * self.cfg.train.d_steps + i)
        self.opt_d.zero_grad(set_to_none=True)
        if (norm := self.backward_step(loss_d, self.opt_d)) is not None:
            stats["grad_norm_d"] = norm
        self.objective.after_d_step(self.d)
        self.images_seen += self.cfg.train.batch_size
        adaptive = self.augment.adaptive if self.augment else None
        if adaptive is not None:
            adaptive.observe(stats["ada_r"], self.cfg.train.batch_size,
                             functools.partial(distributed.average_stats, self.dist))
            stats["ada_p"] = torch.tensor(adaptive.p)
        return (fake, real, y), stats

    def generator_step(self, noise: float, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
                       ) -> dict[str, torch.Tensor]:
        """One G update on ``batch`` (fake with its graph, real, y) from :meth:`discriminator_step`, or on
        fresh fakes and a fresh real batch when None (a G step without a D step before it)."""
        if batch is None:
            real, y = self.stream.next()
            y = y if self.num_classes else None
            batch = (self.g_train(self.draw_latents(self.cfg.train.batch_size), y), real, y)
        fake, real, y = batch
        self.d.requires_grad_(False)  # G's step needs gradients through D, not for D's weights
        loss_g, g_stats = self.objective.generator_loss(self.judge, fake, y, noise, self.rng, real=real)
        g_reg = self.g.regularization() if callable(getattr(self.g, "regularization", None)) else None
        if g_reg is not None:  # a model's own penalty on its weights (BigGAN's orthogonal regularisation)
            loss_g = loss_g + g_reg
            g_stats["g_reg"] = g_reg.detach()
        self.opt_g.zero_grad(set_to_none=True)
        if (norm := self.backward_step(loss_g, self.opt_g)) is not None:
            g_stats["grad_norm_g"] = norm
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.g, self.step)
        return g_stats

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

    def write_samples(self, z: torch.Tensor, run_dir: Path, logger: RunLogger | None) -> None:
        # as `gankit sample` lays out a grid: a column per class, or a row per cluster (2D points cycle
        # through the classes); the PNG at about 128 px per image, as `sample` writes it
        columns = class_columns(self.num_classes, len(z), self_conditioned=self.clusters is not None)
        nrow = columns or self.cfg.log.grid
        per_row = 1 if columns or not self.source.is_image else nrow
        samples = generate(self.sampling_net(), z, labels=self.labels(len(z), per_row))
        path = run_dir / "samples" / f"step_{self.step:06d}.png"
        if self.source.is_image:
            save_image_grid(samples, self.cfg.data.normalize, path, nrow, default_scale(samples.shape[-1]))
            if logger is not None:
                logger.image(self.step, image_grid(samples, self.cfg.data.normalize, nrow), path)
        else:
            save_points_plot(samples, path, self.source.data[:2500].float().cpu(), mixture_modes(self.cfg.data.name))
            if logger is not None:
                logger.image(self.step, None, path)  # the scatter plot, for the trackers

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

    def weights_finite(self) -> bool:
        """Whether every float weight and buffer of G, D and the EMA is finite (one device sync)."""
        nets = [self.g, self.d] + ([self.ema.shadow] if self.ema is not None else [])
        flags = [torch.isfinite(t).all() for net in nets for t in [*net.parameters(), *net.buffers()]
                 if t.is_floating_point()]
        return bool(torch.stack(flags).all()) if flags else True

    def set_lr_scale(self, scale: float, schedule: float = 1.0) -> None:
        """Learning rates = configured x ``scale`` (lowered by rollbacks) x ``schedule`` (optim.schedule)."""
        self.lr_scale = scale
        set_learning_rates(self.cfg.optim, self.opt_g, self.opt_d, scale * schedule)

    def state_dict(self) -> dict[str, Any]:
        return {
            "g": self.g.state_dict(), "d": self.d.state_dict(),
            "g_ema": None if self.ema is None else self.ema.shadow.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "rng": streams.rng_state(self),
            **self.perf.state_dict(),  # fp16: the gradient scalers
            "clusters": None if self.clusters is None else self.clusters.state_dict(),
        }

    def meta(self, elapsed: float) -> dict[str, Any]:
        return {"config": self.cfg.to_dict(), "step": self.step, "images_seen": self.images_seen,
                "data": self.stream.state_dict(), "data_shape": list(self.source.shape),
                "num_classes": self.num_classes,
                "lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "noise_horizon": self.noise_horizon,
                **({"ada": self.augment.adaptive.state()} if self.augment and self.augment.adaptive else {}),
                "best_fid": None if math.isinf(self.best_fid) else self.best_fid,
                "world_size": self.dist.world_size, "perf": self.perf.describe(),
                "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
                "elapsed_seconds": elapsed, "gankit_version": __version__, "torch_version": torch.__version__,
                "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def load_state_dict(self, state: dict[str, Any], meta: dict[str, Any]) -> None:
        load_weights(self.g, state["g"], "generator")
        load_weights(self.d, state["d"], "discriminator")
        if self.ema is not None:
            if state.get("g_ema") is None:
                raise CheckpointError("the checkpoint has no EMA generator but the config asks for one")
            load_weights(self.ema.shadow, state["g_ema"], "EMA generator")
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        streams.restore_rng(self, state["rng"])  # multi-process: each process's own streams
        self.perf.load_state_dict(state)
        if state.get("clusters") is not None:
            self.set_clusters(Clusters.from_state(state["clusters"], self.device))
        self.stream.load_state_dict(meta["data"])
        self.saved_threads = meta.get("threads")
        if self.augment and self.augment.adaptive is not None:
            self.augment.adaptive.load_state(meta.get("ada"))
        self.step, self.images_seen = int(meta["step"]), int(meta["images_seen"])
        self.rollbacks = int(meta.get("rollbacks", 0))
        self.best_fid = math.inf if meta.get("best_fid") is None else float(meta["best_fid"])
        self.set_lr_scale(float(meta.get("lr_scale", 1.0)))
        # older checkpoints: the horizon was the train.steps they were written under
        self.noise_horizon = meta.get("noise_horizon") or meta["config"]["train"].get("steps")


@GAMES.register("gan")
def prepare_gan(cfg: Config, device: torch.device, dist: Dist) -> Trainer:
    """The noise -> image game: G(z[, y]) judged by D, as the objective says."""
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
    perf = perf_setup(cfg.perf, device, g, d, objective)  # channels-last converts in place: before the EMA copy
    opt_g, opt_d = build_optimizers(cfg.optim, g, d)
    ema = (EMA(g, cfg.train.ema_decay, cfg.train.ema_start, cfg.train.ema_warmup, cfg.train.ema_rampup)
           if cfg.train.ema_decay > 0 else None)
    if cfg.perf.sync_batchnorm and dist.enabled:  # after the EMA copy: rank 0 alone runs the EMA in train mode
        g, d = distributed.sync_batchnorm(device, g, d)
    try:
        stream = BatchStream(source, cfg.train.batch_size, cfg.train.seed, device, cfg.data.num_workers,
                             dist.rank, dist.world_size)
    except ValueError as exc:
        raise ConfigError(f"config: train.batch_size: {exc}") from None
    rng, zrng = streams.random_streams(dist, cfg.train.seed, device)
    return Trainer(cfg, device, source, g, d, ema, opt_g, opt_d, objective, stream, rng,
                   num_classes=num_classes, augment=augment or None, dist=dist, perf=perf, zrng=zrng,
                   auto_threads=fixed_threads(cfg.train.threads, device, dist) is None and device.type == "cpu",
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
