"""The training loop: generic over models and objectives, callable from Python, never reads argv.

Reads top to bottom: prepare (validate everything, write nothing) -> open the run directory ->
restore a checkpoint if resuming -> loop (D steps, G step, EMA, log, sample, checkpoint) -> finish.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from gankit import distributed, game, streams, trackers
from gankit import translation  # noqa: F401  (registers the pix2pix and cyclegan games)
from gankit.checkpoint import (CheckpointDir, CheckpointError, atomic_write_bytes, load_checkpoint,
                               nonfinite_weights, remove_temporaries)
from gankit.config import Config, ConfigError, from_dict, load, resume_conflicts
from gankit.data import BatchStream, DataError
from gankit.device import select_device  # noqa: F401  (re-exported: gankit.train.select_device)
from gankit.distributed import Dist
from gankit.evaluator import TrainingEvaluator
from gankit.game import GAMES, Game
from gankit.gan import Trainer  # registers the gan game
from gankit.health import Alarm, HealthMonitor
from gankit.logs import NullLogger, RunLogger, plot_loss_curves
from gankit.runlock import RunDirBusy, RunLock
from gankit.sampling import latents
from gankit.threads import available_cores, choose_threads, fixed_threads, probe_work


class TrainError(RuntimeError):
    """A run that cannot start or continue; nothing was lost."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    stopped_by: str  # "steps", "max_seconds" or "interrupt"
    last: dict[str, float] = field(default_factory=dict)


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
    trackers.check_installed(cfg.log)  # before anything is written
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
                       tensorboard=trackers.tensorboard_on(cfg.log),
                       batch_size=cfg.train.batch_size * cfg.train.d_steps, deadline=deadline, config=cfg.to_dict(),
                       trackers=trackers.library_trackers(cfg.log)) \
        if ctx.is_main else NullLogger(start_step=start_step, batch_size=cfg.train.batch_size * cfg.train.d_steps)
    logger.message(start_line(trainer, run_dir, start_step, threads_how))
    for tracker in logger.trackers:
        logger.message(tracker.describe())
    if ctx.enabled or trainer.perf.channels_last or trainer.perf.compile != "off" or (
            trainer.perf.amp != "fp32" and trainer.device.type != "cpu"):  # a CPU's autocast: in the start line
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
        from gankit.objectives import OBJECTIVES

        labels = OBJECTIVES.get(cfg.objective.name).output_labels
        plot_loss_curves(run_dir / "metrics.jsonl", run_dir / "loss_curves.png", labels=labels)
    return TrainResult(run_dir, trainer.step, last_ckpt, stopped_by, row)


PROBE_SHARE = 0.05  # of a time budget (train.max_seconds), the most the thread probe may spend of it


def settle_threads(trainer: Game) -> str:
    """Auto threads on the CPU: the count a resumed checkpoint trained with (resume stays bit-exact),
    else the faster of all cores and one, timed on copies of G and D within a twentieth of a time budget
    (all cores where that cannot be done); returns how it was chosen."""
    if not trainer.auto_threads:
        return ""
    if trainer.saved_threads:
        torch.set_num_threads(int(trainer.saved_threads))
        return "auto, as the checkpoint trained"
    cfg = trainer.cfg
    work = probe_work(trainer.g, trainer.d, cfg.model.latent_dim, trainer.source.shape,
                      cfg.train.batch_size // trainer.dist.world_size, trainer.num_classes, trainer.device)
    budget = None if cfg.train.max_seconds is None else PROBE_SHARE * cfg.train.max_seconds
    chosen, rates = choose_threads(work, available_cores(), budget=budget)
    torch.set_num_threads(chosen)
    if not rates:
        return "auto"
    if 0 in rates:
        return (f"auto: all cores; timing them against one would take ~{rates[0]:.2g} s, more than "
                f"{PROBE_SHARE:.0%} of the {cfg.train.max_seconds:g} s budget")
    return "auto: " + " vs ".join(f"{rates[n]:.3g} passes/s on {n}" for n in sorted(rates, reverse=True))


def start_line(trainer: Game, run_dir: Path, start_step: int, threads_how: str = "") -> str:
    """What the run is, in one line: device and threads, model sizes, data, run directory."""
    def millions(net: nn.Module) -> str:
        return f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f}M"

    cfg, source = trainer.cfg, trainer.source
    n = torch.get_num_threads()
    how = f" ({threads_how})" if threads_how else ""
    threads = f", {n} thread{'s' * (n > 1)}{how}" if trainer.device.type == "cpu" else ""
    if trainer.device.type == "cpu" and trainer.perf.amp != "fp32":
        native = " (auto: the CPU has native bfloat16)" if cfg.perf.amp == "auto" else ""
        threads += f", {trainer.perf.amp} autocast{native}"
    origin = getattr(trainer, "data_origin", cfg.data.name)  # translation games name their folder
    data = f"{origin}: {len(source):,} " + ("x".join(map(str, source.shape)) + " images"
                                            if source.is_image else f"{source.shape[-1]}-D points")
    begin = f"resuming at step {start_step}" if start_step else "training"
    conditioning = getattr(trainer, "conditioning", "")
    return (f"gankit: {begin} on {trainer.device.type}{threads} | G {cfg.model.generator.get('name')} "
            f"{millions(trainer.g)}, D {cfg.model.discriminator.get('name')} {millions(trainer.d)} params"
            f"{', ' + conditioning if conditioning else ''} | {data} | run dir {run_dir}")


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

