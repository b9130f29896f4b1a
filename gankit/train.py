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
from datetime import datetime, timezone
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed
import torch.nn as nn
import yaml

from gankit import __version__, distributed, streams, trackers
from gankit.checkpoint import (CheckpointDir, CheckpointError, atomic_write_bytes, load_checkpoint,
                               nonfinite_weights, remove_temporaries)
from gankit.config import Config, ConfigError, from_dict, load, resume_conflicts
from gankit.data import BatchStream, DataError
from gankit.device import select_device  # noqa: F401  (re-exported: gankit.train.select_device)
from gankit.distributed import Dist
from gankit.evaluator import TrainingEvaluator
from gankit.games.base import Game, Monitored, ThreadTimed, build_game, set_lr, weights_finite
from gankit.games.phases import train_step
from gankit.health import Alarm, HealthMonitor
from gankit.logs import NullLogger, RunLogger, plot_loss_curves
from gankit.objectives import OBJECTIVES
from gankit.run_state import RunState
from gankit.runlock import RunDirBusy, RunLock
from gankit.sampling import latents
from gankit.threads import available_cores, choose_threads, fixed_threads


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
    return build_game(cfg, device, dist)


def checkpoint_meta(game: Game, run: RunState, elapsed: float) -> dict[str, Any]:
    """A checkpoint's metadata: the game's part, the run's, and where and when it was written."""
    return {**game.meta(), **run.meta(), "world_size": game.runtime.dist.world_size,
            "threads": torch.get_num_threads() if game.runtime.device.type == "cpu" else None,
            "elapsed_seconds": elapsed, "gankit_version": __version__, "torch_version": torch.__version__,
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def restore(game: Game, run: RunState, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """Continue ``game`` and ``run`` from a checkpoint's (or a snapshot's) state and metadata."""
    game.load_state_dict(state, meta)
    run.restore(meta)
    set_lr(game, run.lr_scale)


def save_checkpoint(game: Game, run: RunState, ckpts: CheckpointDir, elapsed: float) -> Path:
    """Every process calls this: rank 0 writes the checkpoint (with every process's RNG states), the
    others wait until it is complete. Returns its path; a failed save raises in every process."""
    ctx = game.runtime.dist
    path = ckpts.path_for(run.step)
    if not ctx.enabled:
        game.sampling_net()  # checkpoints hold sampling-ready EMA statistics
        return ckpts.save(run.step, game.state_dict(), checkpoint_meta(game, run, elapsed))
    gathered: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    torch.distributed.gather_object(game.state_dict()["rng"], gathered, dst=0, group=ctx.control)
    error: BaseException | None = None
    if ctx.is_main:
        try:
            game.sampling_net()
            state = game.state_dict()
            state["rng"] = {**state["rng"], "ranks": gathered}
            path = ckpts.save(run.step, state, checkpoint_meta(game, run, elapsed))
        except Exception as exc:  # tell the others before raising, or they wait for rank 0 forever
            error = exc
    (failed,) = distributed.any_of(ctx, error is not None)
    if error is not None:
        raise error
    if failed:
        raise TrainError(f"rank 0 could not write the checkpoint of step {run.step}; see its error")
    return path


def describe_speed(game: Game) -> str:
    """One line with the run's resolved scale and speed settings (printed at the start)."""
    ctx, perf, bs = game.runtime.dist, game.runtime.perf, game.cfg.train.batch_size
    split = f"{ctx.world_size} processes x {bs // ctx.world_size} = {bs} images" if ctx.enabled else f"{bs} images"
    return (f"gankit: {split} per step on {game.runtime.device.type}; amp {perf.amp}, "
            f"channels_last {'on' if perf.channels_last else 'off'}, compile {perf.compile}")


def _open_run_dir(cfg: Config, run_dir: Path, resume: bool, game: Game, run: RunState,
                  held: contextlib.ExitStack) -> CheckpointDir:
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainError(f"the run directory {run_dir} is a file")
    if game.runtime.dist.is_main:  # before reading it: a second process must not resume what the first is writing
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
        restore(game, run, state, meta)
    if not game.runtime.dist.is_main:  # rank 0 alone writes to the run directory
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
    game = prepare(cfg, ctx)
    cfg = game.cfg  # model.conditional auto resolved against the data
    run = RunState(total=total_steps(cfg, game.data.stream))
    evaluator = TrainingEvaluator.build(cfg, game) if cfg.eval.every else None
    evaluator = evaluator if ctx.is_main else None  # rank 0 alone evaluates, samples and writes
    run_dir = Path(distributed.broadcast_object(ctx, str(run_dir) if run_dir is not None else str(default_run_dir())))
    ckpts = _open_run_dir(cfg, run_dir, resume, game, run, held)
    run.noise_horizon = run.noise_horizon or run.total  # a resumed run keeps the schedule it began with
    loop = Loop(game, run, ckpts, run_dir, evaluator, t0, stop)
    try:
        loop.start(settle_threads(game, run), resume)
        stopped_by = loop.loop()
        loop.finish()
    finally:
        loop.logger.close()
    if ctx.is_main and cfg.log.plot:
        labels = OBJECTIVES.get(cfg.objective.name).output_labels
        plot_loss_curves(run_dir / "metrics.jsonl", run_dir / "loss_curves.png", labels=labels)
    return TrainResult(run_dir, run.step, loop.last_ckpt, stopped_by, loop.row)


class Loop:
    """One training run's loop: steps until a stop condition, then the statistics, health alarms, samples,
    evaluations and checkpoints each step is due; diverged states roll back to the last good one."""

    def __init__(self, game: Game, run: RunState, ckpts: CheckpointDir, run_dir: Path,
                 evaluator: TrainingEvaluator | None, t0: float, stop: Any) -> None:
        cfg, ctx, device = game.cfg, game.runtime.dist, game.runtime.device
        self.game, self.run, self.ckpts, self.run_dir, self.evaluator = game, run, ckpts, run_dir, evaluator
        self.cfg, self.ctx, self.t0, self.stop = cfg, ctx, t0, stop
        self.start_step = run.step
        # what a rollback returns to when no checkpoint has been written yet
        self.initial = (copy.deepcopy(game.state_dict()), checkpoint_meta(game, run, 0.0))
        deadline = None if cfg.train.max_seconds is None else t0 + cfg.train.max_seconds
        images = cfg.train.batch_size * cfg.train.d_steps
        self.logger: RunLogger | NullLogger = RunLogger(
            run_dir, start_step=run.step, total_steps=run.total, progress=cfg.log.progress,
            tensorboard=trackers.tensorboard_on(cfg.log), batch_size=images, deadline=deadline,
            config=cfg.to_dict(), trackers=trackers.library_trackers(cfg.log)) \
            if ctx.is_main else NullLogger(start_step=run.step, batch_size=images)
        logistic = OBJECTIVES.get(cfg.objective.name).logistic_d  # D(G(z)) a probability: its alarm applies
        self.health = HealthMonitor(cfg.health, logistic_d=logistic)
        self.fixed_z = latents(cfg.log.grid ** 2 if game.data.source.is_image else 2500, cfg.model.latent_dim,
                               cfg.train.seed + streams.SAMPLE_GRID, device)
        self.diversity_z = latents(128, cfg.model.latent_dim, cfg.train.seed + streams.DIVERSITY, device)
        self.last_ckpt, self.saved_step, self.row = ckpts.latest(), run.step, {}
        self.window = StatWindow()

    def start(self, threads_how: str, resume: bool) -> None:
        game, logger, perf = self.game, self.logger, self.game.runtime.perf
        logger.message(start_line(game, self.run_dir, self.start_step, threads_how))
        for tracker in logger.trackers:
            logger.message(tracker.describe())
        if self.ctx.enabled or perf.channels_last or perf.compile != "off" or (
                perf.amp != "fp32" and game.runtime.device.type != "cpu"):  # a CPU's autocast: in the start line
            logger.message(describe_speed(game))
        if resume and self.start_step == 0:
            logger.message(f"gankit: --resume: {self.ckpts.root} holds no checkpoint yet; starting the run at step 0")

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def alarm(self, alarms: list[Alarm]) -> None:
        for a in alarms:
            self.logger.message(a.text())
            self.logger.event(a.to_dict())

    def loop(self) -> str:
        """Steps until train.steps, the time budget or a stop request; returns which stopped it."""
        game, run = self.game, self.run
        while run.total is None or run.step < run.total:
            reason = distributed.stop_reason(self.ctx, self.t0, self.cfg.train.max_seconds, self.stop)
            if reason is not None:  # agreed by all processes
                return reason
            try:
                self.window.add(train_step(game, run))
            except DataError as exc:  # a file that fails to decode mid-run: keep the steps done so far
                raise self.saved_before_data_error(exc) from None
            self.logger.advance()
            self.after_step()
        return "steps"

    def after_step(self) -> None:
        cfg, run, step = self.cfg, self.run, self.run.step
        at_log, at_ckpt = step % cfg.log.every == 0, step % cfg.checkpoint.every == 0
        if at_log or at_ckpt:
            distributed.average_stats(self.ctx, self.window.sums)  # global-batch values, the same everywhere
        if (at_log or at_ckpt) and not (self.window.finite() and weights_finite(self.game)):
            # never log, sample or checkpoint a diverged model (losses are computed before the update
            # that may have broken the weights, so both are checked): go back to the last good state
            back_to = self.rollback()
            self.alarm([self.health.diverged(step, back_to, run.lr_scale)])
            self.logger.rewind(back_to)
            self.window = StatWindow()
            self.saved_step = back_to
            return
        if at_log:
            self.log_row(with_health=True)
        if cfg.log.sample_every and step % cfg.log.sample_every == 0 and self.ctx.is_main:
            self.game.write_samples(self.fixed_z, step, self.run_dir, self.logger)
        if self.evaluator is not None and step % cfg.eval.every == 0:
            self.evaluate(step)
        if at_ckpt:
            self.last_ckpt = save_checkpoint(self.game, run, self.ckpts, self.elapsed())
            self.saved_step = step

    def log_row(self, with_health: bool) -> None:
        means = self.window.means()
        self.row = self.logger.scalars(self.run.step, means, {"kimg": self.run.images_seen / 1000,
                                                              "seconds": self.elapsed()})
        self.window = StatWindow()
        if with_health:
            game = self.game
            diversity = game.diversity(self.diversity_z) if self.cfg.health.alarms and isinstance(game, Monitored) \
                else None
            self.alarm(self.health.observe(self.run.step, d_fake=means.get("d_fake"), diversity=diversity))

    def evaluate(self, step: int) -> None:
        assert self.evaluator is not None
        result = self.evaluator.evaluate(step)
        self.logger.record(step, {f"eval/{k}": v for k, v in result.items()})
        self.alarm(self.health.observe(step, coverage=result.get("class_coverage")))
        if self.cfg.eval.keep_best and result.get("fid", math.inf) < self.run.best_fid:
            self.run.best_fid = result["fid"]
            self.ckpts.save_best(self.game.state_dict(), checkpoint_meta(self.game, self.run, self.elapsed()))

    def finish(self) -> None:
        """The last statistics row, the final checkpoint and grid (a diverged end: the last good one stands)."""
        distributed.average_stats(self.ctx, self.window.sums)
        if not (self.window.finite() and weights_finite(self.game)):
            self.rollback()
            self.saved_step = self.run.step
            self.last_ckpt = self.ckpts.latest()
        elif self.window.counts:  # the final step always has its row, however short the run
            self.log_row(with_health=False)
        if self.last_ckpt is None or self.run.step != self.saved_step:
            self.last_ckpt = save_checkpoint(self.game, self.run, self.ckpts, self.elapsed())
        if self.ctx.is_main:  # the final grid, in samples/ and TensorBoard alike
            self.game.write_samples(self.fixed_z, self.run.step, self.run_dir, self.logger)

    def rollback(self) -> int:
        """Restore the last good checkpoint (or the run's start) with lower learning rates; returns its step."""
        game, run, cfg = self.game, self.run, self.cfg
        if run.rollbacks >= cfg.health.rollbacks:
            last = _last_good(self.ckpts)
            good = f"the last good checkpoint is {last[0]}" if last else "no good checkpoint was written yet"
            raise TrainError(f"training diverged (non-finite loss or weights at step {run.step}) after "
                             f"{run.rollbacks} rollbacks with lower learning rates; {good}. Lower "
                             "optim.lr_g/lr_d, or try another objective")
        rollbacks, scale = run.rollbacks + 1, run.lr_scale * cfg.health.rollback_lr_factor
        last = _last_good(self.ckpts)
        state, meta = last[1:] if last is not None else copy.deepcopy(self.initial)
        restore(game, run, state, meta)
        run.rollbacks, run.lr_scale = rollbacks, scale
        set_lr(game, scale)
        return run.step

    def saved_before_data_error(self, exc: DataError) -> DataError:
        """Checkpoint the steps since the last save (single process, finite model), then the error to raise."""
        game, run = self.game, self.run
        if game.runtime.dist.enabled or run.step == self.saved_step or not (self.window.finite() and weights_finite(game)):
            return DataError(f"{exc}; the last checkpoint stands")
        path = save_checkpoint(game, run, self.ckpts, self.elapsed())
        return DataError(f"{exc}; saved {path} at step {run.step}: fix or remove the file, then continue with "
                         "--resume")


PROBE_SHARE = 0.05  # of a time budget (train.max_seconds), the most the thread probe may spend of it


def settle_threads(game: Game, run: RunState) -> str:
    """Auto threads on the CPU (games that offer a probe): the count a resumed checkpoint trained with
    (resume stays bit-exact), else the faster of all cores and one, timed on copies of the networks within a
    twentieth of a time budget (all cores where that cannot be done); returns how it was chosen."""
    cfg = game.cfg
    device = game.runtime.device
    auto = fixed_threads(cfg.train.threads, device, game.runtime.dist) is None and device.type == "cpu"
    if not auto or not isinstance(game, ThreadTimed):
        return ""
    if run.threads:
        torch.set_num_threads(int(run.threads))
        return "auto, as the checkpoint trained"
    budget = None if cfg.train.max_seconds is None else PROBE_SHARE * cfg.train.max_seconds
    chosen, rates = choose_threads(game.probe_work(), available_cores(), budget=budget)
    torch.set_num_threads(chosen)
    if not rates:
        return "auto"
    if 0 in rates:
        return (f"auto: all cores; timing them against one would take ~{rates[0]:.2g} s, more than "
                f"{PROBE_SHARE:.0%} of the {cfg.train.max_seconds:g} s budget")
    return "auto: " + " vs ".join(f"{rates[n]:.3g} passes/s on {n}" for n in sorted(rates, reverse=True))


def start_line(game: Game, run_dir: Path, start_step: int, threads_how: str = "") -> str:
    """What the run is, in one line: device and threads, model sizes, data, run directory."""
    def millions(net: nn.Module) -> str:
        return f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f}M"

    cfg, source, device, amp = game.cfg, game.data.source, game.runtime.device, game.runtime.perf.amp
    n = torch.get_num_threads()
    how = f" ({threads_how})" if threads_how else ""
    threads = f", {n} thread{'s' * (n > 1)}{how}" if device.type == "cpu" else ""
    if device.type == "cpu" and amp != "fp32":
        native = " (auto: the CPU has native bfloat16)" if cfg.perf.amp == "auto" else ""
        threads += f", {amp} autocast{native}"
    data = f"{game.data.origin}: {len(source):,} " + ("x".join(map(str, source.shape)) + " images"
                                                      if source.is_image else f"{source.shape[-1]}-D points")
    begin = f"resuming at step {start_step}" if start_step else "training"
    g, d = list(game.nets.values())[:2]
    note = game.meta().get("conditioning")
    return (f"gankit: {begin} on {device.type}{threads} | G {cfg.model.generator.get('name')} "
            f"{millions(g)}, D {cfg.model.discriminator.get('name')} {millions(d)} params"
            f"{', ' + note if note else ''} | {data} | run dir {run_dir}")


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

