"""The training loop: generic over models and objectives, callable from Python, never reads argv.

Reads top to bottom: prepare (validate everything, write nothing) -> open the run directory ->
restore a checkpoint if resuming -> loop (D steps, G step, EMA, log, sample, checkpoint) -> finish.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from gankit import __version__, distributed, game, streams
from gankit import translation  # noqa: F401  (registers the pix2pix and cyclegan games)
from gankit.augment import AugmentedDiscriminator, DiffAugment
from gankit.checkpoint import (CheckpointDir, CheckpointError, atomic_write_bytes, load_checkpoint,
                               nonfinite_weights, remove_temporaries)
from gankit.clustering import Clusters, cluster_images, prior_labels
from gankit.config import Config, ConfigError, from_dict, load, resume_conflicts
from gankit.data import BatchStream, DataError, Source, TensorSource, build_dataset
from gankit.device import select_device  # noqa: F401  (re-exported: gankit.train.select_device)
from gankit.distributed import Dist
from gankit.ema import EMA
from gankit.evaluator import TrainingEvaluator
from gankit.game import GAMES, Game
from gankit.health import Alarm, HealthMonitor, nearest_neighbour_spread
from gankit.logs import NullLogger, RunLogger, plot_loss_curves
from gankit.models import build_models
from gankit.objectives import Objective, build_objective
from gankit.optim import build_optimizers, lr_factor, set_learning_rates
from gankit.perf import Perf, backward_step
from gankit.perf import setup as perf_setup
from gankit.runlock import RunDirBusy, RunLock
from gankit.sampling import (class_labels, generate, image_grid, latents, load_weights, save_image_grid,
                             save_points_plot)
from gankit.threads import available_cores, choose_threads, probe_work


class TrainError(RuntimeError):
    """A run that cannot start or continue; nothing was lost."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    stopped_by: str  # "steps", "max_seconds" or "interrupt"
    last: dict[str, float] = field(default_factory=dict)


def fixed_threads(threads: int | None, device: torch.device, dist: Dist) -> int | None:
    """train.threads, or None where :func:`~gankit.threads.choose_threads` decides by measurement: auto,
    on the CPU, one process with several cores. Processes of a multi-process CPU run share the cores."""
    if threads:
        return threads
    if device.type != "cpu":
        return None
    cores = available_cores()
    if dist.enabled or cores < 2:
        return max(1, cores // dist.world_size)
    return None


def total_steps(cfg: Config, stream: BatchStream) -> int | None:
    if cfg.train.epochs is not None:
        return math.ceil(cfg.train.epochs * stream.batches_per_epoch / cfg.train.d_steps)
    if cfg.train.steps is None and cfg.train.max_seconds is None:
        raise ConfigError("config: set train.steps, train.epochs or train.max_seconds, or the run never stops")
    if cfg.objective.instance_noise > 0 and not cfg.objective.instance_noise_steps and cfg.train.steps is None \
            and cfg.train.epochs is None:
        raise ConfigError("config: objective.instance_noise_steps: 0 anneals the noise over train.steps, and this "
                          "run has none (train.max_seconds only); set objective.instance_noise_steps")
    return cfg.train.steps


@dataclass
class Trainer:
    """Everything a step touches. Built by :func:`prepare`; ``state_dict`` is what a checkpoint holds."""

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

    def labels(self, n: int, per_row: int = 1) -> torch.Tensor | None:
        """Labels for ``n`` samples of a conditional G: clusters in proportion to their size when
        self-conditioned (a grid of ``per_row`` columns shows one cluster per row), else the classes
        in turn; None for an unconditional G."""
        if self.clusters is not None and per_row == 1:
            return prior_labels(n, self.clusters.prior, self.device)
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
        return (every > 0 and self.step > 0 and self.step % every == 0
                and self.step + every <= self.cfg.train.steps)

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

    def backward_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        """Backward, gradients averaged over processes, optimizer step (fp16: through its scaler)."""
        scaler = self.perf.scalers.get("d" if opt is self.opt_d else "g")
        backward_step(loss, opt, scaler, functools.partial(distributed.average_gradients, self.dist))

    def train_step(self, total: int | None) -> dict[str, torch.Tensor]:
        """``d_steps`` D updates, then one G update on the last D step's fakes."""
        noise = self.begin_step(total)
        stats: dict[str, torch.Tensor] = {}
        for i in range(self.cfg.train.d_steps):
            # keep only the graph G reuses: the last D step's fakes
            batch, d_stats = self.discriminator_step(noise, i, keep_graph=i == self.cfg.train.d_steps - 1)
            stats.update(d_stats)  # the last D step's values; a lazy penalty's from the step that ran it
        stats.update(self.generator_step(noise, batch))
        return stats

    def begin_step(self, total: int | None) -> float:
        """The instance-noise std of this step; sets the learning rates of a scheduled run."""
        if self.cfg.optim.schedule != "constant":
            self.set_lr_scale(self.lr_scale, lr_factor(self.cfg.optim, self.step, total))
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
        self.backward_step(loss_d, self.opt_d)
        self.objective.after_d_step(self.d)
        self.images_seen += self.cfg.train.batch_size
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
        self.backward_step(loss_g, self.opt_g)
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.g, self.step)
        return g_stats

    def sampling_net(self) -> nn.Module:
        """The network to sample from: the EMA (with BatchNorm statistics re-estimated) when kept."""
        if self.ema is None:
            return self.g
        z = latents(8 * 256, self.cfg.model.latent_dim, self.cfg.train.seed + streams.EMA_RECALIBRATION, self.device)
        y = self.labels(len(z))
        self.ema.recalibrate_norms(list(z.split(256)), None if y is None else list(y.split(256)))
        return self.ema.shadow

    def write_samples(self, z: torch.Tensor, run_dir: Path, logger: RunLogger | None) -> None:
        # a conditional G shows one class per grid row (2D points cycle through the classes)
        per_row = self.cfg.log.grid if self.source.is_image else 1
        samples = generate(self.sampling_net(), z, labels=self.labels(len(z), per_row))
        path = run_dir / "samples" / f"step_{self.step:06d}.png"
        if self.source.is_image:
            save_image_grid(samples, self.cfg.data.normalize, path, self.cfg.log.grid)
            if logger is not None:
                logger.image(self.step, image_grid(samples, self.cfg.data.normalize, self.cfg.log.grid))
        else:
            save_points_plot(samples, path)

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
        self.step, self.images_seen = int(meta["step"]), int(meta["images_seen"])
        self.rollbacks = int(meta.get("rollbacks", 0))
        self.best_fid = math.inf if meta.get("best_fid") is None else float(meta["best_fid"])
        self.set_lr_scale(float(meta.get("lr_scale", 1.0)))
        # older checkpoints: the horizon was the train.steps they were written under
        self.noise_horizon = meta.get("noise_horizon") or meta["config"]["train"].get("steps")


def prepare(cfg: Config, dist: Dist | None = None) -> Game:
    """Build the game ``game.name`` names (data, models, optimizers, objective); raises before anything is
    written. ``dist``: this process's place in a multi-process run (default: the initialised process
    group's, if any)."""
    dist = dist or distributed.current()
    device = distributed.place(dist, select_device(cfg.train.device))
    threads = fixed_threads(cfg.train.threads, device, dist)
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.train.seed)
    return GAMES.get(cfg.game.name)(cfg, device, dist)


@GAMES.register("gan")
def prepare_gan(cfg: Config, device: torch.device, dist: Dist) -> Trainer:
    """The noise -> image game: G(z[, y]) judged by D, as the objective says."""
    source = build_dataset(cfg.data)
    if cfg.model.conditional == "auto":  # resolved once against the data: checkpoints hold true or false
        raw = cfg.to_dict()
        cfg = from_dict({**raw, "model": {**raw["model"], "conditional": has_labels(source)}})
    num_classes = conditional_classes(cfg, source)
    augment = DiffAugment(cfg.train.augment)
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
    perf = perf_setup(cfg.perf, device, g, d, objective)  # channels-last converts in place: before the EMA copy
    opt_g, opt_d = build_optimizers(cfg.optim, g, d)
    ema = EMA(g, cfg.train.ema_decay, cfg.train.ema_start, cfg.train.ema_warmup) if cfg.train.ema_decay > 0 else None
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
                   auto_threads=fixed_threads(cfg.train.threads, device, dist) is None and device.type == "cpu")


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


def _open_run_dir(cfg: Config, run_dir: Path, resume: bool, trainer: Trainer,
                  held: contextlib.ExitStack) -> CheckpointDir:
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainError(f"the run directory {run_dir} is a file")
    if trainer.dist.is_main:  # before reading it: a second process must not resume what the first is writing
        _lock_run_dir(run_dir, held)
    ckpts = CheckpointDir(run_dir / "checkpoints", cfg.checkpoint.keep)
    latest = ckpts.latest()
    if latest is not None and not resume:
        raise TrainError(f"{run_dir} already holds checkpoints; pass --resume to continue it, "
                         "or choose another --run-dir")
    if resume and latest is not None:
        state, meta = _load_for_resume(latest, ckpts)  # RNG states must stay CPU tensors
        conflicts = resume_conflicts(meta["config"], cfg)
        if conflicts:
            raise TrainError(f"cannot resume {latest}: the config differs in " + "; ".join(conflicts))
        trainer.load_state_dict(state, meta)
    if not trainer.dist.is_main:  # rank 0 alone writes to the run directory
        return ckpts
    _check_output_folders(ckpts.root, run_dir / "samples")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
    except OSError as exc:  # read-only, full, or not a directory: say so before any training happens
        raise TrainError(f"cannot write to the run directory {run_dir}: {exc.strerror or exc}") from None
    for folder in (run_dir, ckpts.root):  # what saves killed mid-write (kill -9, power loss) left behind
        remove_temporaries(folder)
    return ckpts


def _lock_run_dir(run_dir: Path, held: contextlib.ExitStack) -> None:
    """Create the run directory if needed and hold its lock until ``held`` closes."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        held.enter_context(RunLock(run_dir))
    except RunDirBusy as exc:
        raise TrainError(str(exc)) from None
    except OSError as exc:
        raise TrainError(f"cannot write to the run directory {run_dir}: {exc.strerror or exc}") from None


def _load_for_resume(latest: Path, ckpts: CheckpointDir) -> tuple[dict[str, Any], dict[str, Any]]:
    """The latest checkpoint; when it is damaged, the error says which earlier one is intact."""
    try:
        return load_checkpoint(latest)
    except CheckpointError as exc:
        for older in reversed([p for p in ckpts.all() if p != latest]):
            try:
                load_checkpoint(older)
            except CheckpointError:
                continue
            raise CheckpointError(f"{exc}; the previous checkpoint {older.name} is intact: move {latest.name} "
                                  "out of the folder to resume from it") from None
        raise


def _check_output_folders(*folders: Path) -> None:
    """Every folder a run writes into exists and is writable now, not at its first save steps later."""
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise TrainError(f"{folder} is a file, but the run writes into a folder of that name; move it away")
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise TrainError(f"cannot create {folder}: {exc.strerror or exc}") from None
        if not os.access(folder, os.W_OK):
            raise TrainError(f"cannot write into {folder}: permission denied")


def default_run_dir() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def train(cfg: Config | dict | str | Path, run_dir: str | Path | None = None, *, resume: bool = False,
          stop: Any = None) -> TrainResult:
    """Train a GAN as ``cfg`` describes; ``resume`` continues the latest checkpoint in ``run_dir``.

    ``stop`` is an optional object with a ``requested`` attribute, polled between steps (signal handling).
    The run directory is locked for the whole call: a second process on it is refused.
    """
    with contextlib.ExitStack() as held:  # the run directory's lock, released however the run ends
        return _train(cfg, run_dir, resume, stop, held)


def _train(cfg: Config | dict | str | Path, run_dir: str | Path | None, resume: bool, stop: Any,
           held: contextlib.ExitStack) -> TrainResult:
    t0 = time.perf_counter()
    if isinstance(cfg, (str, Path)):
        cfg = load(cfg)
    elif isinstance(cfg, dict):
        cfg = from_dict(cfg)
    ctx = distributed.setup(select_device(cfg.train.device))  # under torchrun: join the process group
    trainer = prepare(cfg, ctx)
    cfg = trainer.cfg  # model.conditional auto resolved against the data
    total = total_steps(cfg, trainer.stream)
    evaluator = TrainingEvaluator.build(cfg, trainer) if cfg.eval.every else None
    evaluator = evaluator if ctx.is_main else None  # rank 0 alone evaluates, samples and writes
    run_dir = Path(distributed.broadcast_object(ctx, str(run_dir) if run_dir is not None else str(default_run_dir())))
    ckpts = _open_run_dir(cfg, run_dir, resume, trainer, held)
    trainer.noise_horizon = trainer.noise_horizon or total  # a resumed run keeps the schedule it began with
    start_step = trainer.step
    threads_how = settle_threads(trainer)
    # what a rollback returns to when no checkpoint has been written yet
    initial = (copy.deepcopy(trainer.state_dict()), trainer.meta(0.0))
    deadline = None if cfg.train.max_seconds is None else t0 + cfg.train.max_seconds
    logger = RunLogger(run_dir, start_step=start_step, total_steps=total, progress=cfg.log.progress,
                       tensorboard=cfg.log.tensorboard, batch_size=cfg.train.batch_size * cfg.train.d_steps,
                       deadline=deadline, config=cfg.to_dict()) \
        if ctx.is_main else NullLogger(start_step=start_step, batch_size=cfg.train.batch_size * cfg.train.d_steps)
    logger.message(start_line(trainer, run_dir, start_step, threads_how))
    if ctx.enabled or trainer.perf.active:
        logger.message(game.describe(trainer))
    if resume and start_step == 0:
        logger.message(f"gankit: --resume: {ckpts.root} holds no checkpoint yet; starting the run at step 0")
    health = HealthMonitor(cfg.health, logistic_d=trainer.logistic_d)
    fixed_z = latents(cfg.log.grid ** 2 if trainer.source.is_image else 2500, cfg.model.latent_dim,
                      cfg.train.seed + streams.SAMPLE_GRID, trainer.device)
    diversity_z = latents(128, cfg.model.latent_dim, cfg.train.seed + streams.DIVERSITY, trainer.device)
    stopped_by, last_ckpt, saved_step, row = "steps", ckpts.latest(), start_step, {}
    window = StatWindow()

    def alarm(alarms: list[Alarm]) -> None:
        for a in alarms:
            logger.message(a.text())
            logger.event(a.to_dict())

    try:
        while total is None or trainer.step < total:
            reason = distributed.stop_reason(ctx, t0, cfg.train.max_seconds, stop)  # agreed by all processes
            if reason is not None:
                stopped_by = reason
                break
            trainer.before_step()
            try:
                window.add(trainer.train_step(total))
            except DataError as exc:  # a file that fails to decode mid-run: keep the steps done so far
                raise _saved_before_data_error(exc, trainer, ckpts, window, saved_step, t0) from None
            logger.advance()
            step = trainer.step
            at_log, at_ckpt = step % cfg.log.every == 0, step % cfg.checkpoint.every == 0
            if at_log or at_ckpt:
                distributed.average_stats(ctx, window.sums)  # global-batch values, the same in every process
            if (at_log or at_ckpt) and not (window.finite() and trainer.weights_finite()):
                # never log, sample or checkpoint a diverged model (losses are computed before the update
                # that may have broken the weights, so both are checked): go back to the last good state
                back_to = _rollback(trainer, ckpts, initial, cfg)
                alarm([health.diverged(step, back_to, trainer.lr_scale)])
                logger.rewind(back_to)
                window = StatWindow()
                saved_step = back_to
                continue
            if at_log:
                means = window.means()
                row = logger.scalars(step, means, {"kimg": trainer.images_seen / 1000,
                                                   "seconds": time.perf_counter() - t0})
                window = StatWindow()
                diversity = trainer.diversity(diversity_z) if cfg.health.alarms else None
                alarm(health.observe(step, d_fake=means.get("d_fake"), diversity=diversity))
            if cfg.log.sample_every and step % cfg.log.sample_every == 0 and ctx.is_main:
                trainer.write_samples(fixed_z, run_dir, logger)
            if evaluator is not None and step % cfg.eval.every == 0:
                result = evaluator.evaluate(step)
                logger.record(step, {f"eval/{k}": v for k, v in result.items()})
                alarm(health.observe(step, coverage=result.get("class_coverage")))
                if cfg.eval.keep_best and result.get("fid", math.inf) < trainer.best_fid:
                    trainer.best_fid = result["fid"]
                    ckpts.save_best(trainer.state_dict(), trainer.meta(time.perf_counter() - t0))
            if at_ckpt:
                last_ckpt = game.save_checkpoint(trainer, ckpts, time.perf_counter() - t0)
                saved_step = step
        distributed.average_stats(ctx, window.sums)
        if not (window.finite() and trainer.weights_finite()):  # diverged after the last check: the last good checkpoint stands
            _rollback(trainer, ckpts, initial, cfg)
            saved_step = trainer.step
            last_ckpt = ckpts.latest()
        elif window.counts:  # the final step always has its row, however short the run
            row = logger.scalars(trainer.step, window.means(), {"kimg": trainer.images_seen / 1000,
                                                                "seconds": time.perf_counter() - t0})
        if last_ckpt is None or trainer.step != saved_step:
            last_ckpt = game.save_checkpoint(trainer, ckpts, time.perf_counter() - t0)
        if ctx.is_main:  # the final grid, in samples/ and TensorBoard alike
            trainer.write_samples(fixed_z, run_dir, logger)
    finally:
        logger.close()
    if ctx.is_main and cfg.log.plot:
        plot_loss_curves(run_dir / "metrics.jsonl", run_dir / "loss_curves.png")
    return TrainResult(run_dir, trainer.step, last_ckpt, stopped_by, row)


def settle_threads(trainer: Game) -> str:
    """Auto threads on the CPU: the count a resumed checkpoint trained with (resume stays bit-exact),
    else the faster of all cores and one, timed on copies of G and D; returns how it was chosen."""
    if not trainer.auto_threads:
        return ""
    if trainer.saved_threads:
        torch.set_num_threads(int(trainer.saved_threads))
        return "auto, as the checkpoint trained"
    cfg = trainer.cfg
    work = probe_work(trainer.g, trainer.d, cfg.model.latent_dim, trainer.source.shape,
                      cfg.train.batch_size // trainer.dist.world_size, trainer.num_classes, trainer.device)
    chosen, rates = choose_threads(work, available_cores())
    torch.set_num_threads(chosen)
    if not rates:
        return "auto"
    return "auto: " + " vs ".join(f"{rates[n]:.3g} passes/s on {n}" for n in sorted(rates, reverse=True))


def start_line(trainer: Game, run_dir: Path, start_step: int, threads_how: str = "") -> str:
    """What the run is, in one line: device and threads, model sizes, data, run directory."""
    def millions(net: nn.Module) -> str:
        return f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f}M"

    cfg, source = trainer.cfg, trainer.source
    n = torch.get_num_threads()
    how = f" ({threads_how})" if threads_how else ""
    threads = f", {n} thread{'s' * (n > 1)}{how}" if trainer.device.type == "cpu" else ""
    data = f"{cfg.data.name}: {len(source):,} " + ("x".join(map(str, source.shape)) + " images"
                                                   if source.is_image else f"{source.shape[-1]}-D points")
    begin = f"resuming at step {start_step}" if start_step else "training"
    return (f"gankit: {begin} on {trainer.device.type}{threads} | G {cfg.model.generator.get('name')} "
            f"{millions(trainer.g)}, D {cfg.model.discriminator.get('name')} {millions(trainer.d)} params | "
            f"{data} | run dir {run_dir}")


class StatWindow:
    """Sums of per-step statistics over one log interval, kept on the device (no sync per step)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}  # per key: a lazy penalty is not measured at every step

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
            self.counts[k] = self.counts.get(k, 0) + 1

    def finite(self) -> bool:
        return all(bool(torch.isfinite(v)) for v in self.sums.values())

    def means(self) -> dict[str, float]:
        return {k: float(v) / self.counts[k] for k, v in self.sums.items()}


def _rollback(trainer: Trainer, ckpts: CheckpointDir, initial: tuple[dict, dict], cfg: Config) -> int:
    """Restore the last good checkpoint (or the run's start) with lower learning rates; returns its step."""
    if trainer.rollbacks >= cfg.health.rollbacks:
        last = _last_good(ckpts)
        good = f"the last good checkpoint is {last[0]}" if last else "no good checkpoint was written yet"
        raise TrainError(f"training diverged (non-finite loss or weights at step {trainer.step}) after "
                         f"{trainer.rollbacks} rollbacks with lower learning rates; {good}. Lower "
                         "optim.lr_g/lr_d, or try another objective")
    rollbacks, scale = trainer.rollbacks + 1, trainer.lr_scale * cfg.health.rollback_lr_factor
    last = _last_good(ckpts)
    state, meta = last[1:] if last is not None else copy.deepcopy(initial)
    trainer.load_state_dict(state, meta)
    trainer.rollbacks = rollbacks
    trainer.set_lr_scale(scale)
    return trainer.step


def _saved_before_data_error(exc: DataError, trainer: Trainer, ckpts: CheckpointDir, window: "StatWindow",
                             saved_step: int, t0: float) -> DataError:
    """Checkpoint the steps since the last save (single process, finite model), then the error to raise."""
    if trainer.dist.enabled or trainer.step == saved_step or not (window.finite() and trainer.weights_finite()):
        return DataError(f"{exc}; the last checkpoint stands")
    path = game.save_checkpoint(trainer, ckpts, time.perf_counter() - t0)
    return DataError(f"{exc}; saved {path} at step {trainer.step}: fix or remove the file, then continue with "
                     "--resume")


def _last_good(ckpts: CheckpointDir) -> tuple[Path, dict, dict] | None:
    """(path, state, meta) of the newest checkpoint that loads and holds finite weights, or None (runs of
    older gankit versions may hold diverged checkpoints)."""
    latest = ckpts.latest()
    for path in [latest] * (latest is not None) + [p for p in reversed(ckpts.all()) if p != latest]:
        try:
            state, meta = load_checkpoint(path)
        except CheckpointError:
            continue
        if not nonfinite_weights(state):
            return path, state, meta
    return None

