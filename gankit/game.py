"""What the training loop needs from a game: the one interface every kind of GAN honours.

A game owns its models, optimizers, losses and random streams, and says what one step computes, what a
checkpoint holds and what its sample grids show. The loop (gankit.train) owns everything around it:
the stop conditions, logging, health alarms, divergence rollbacks, checkpoints and the processes of a
multi-process run. ``game.name`` selects a game from :data:`GAMES`; the noise -> image GAN
(:class:`gankit.gan.Trainer`) is the game ``gan``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch
import torch.distributed

from gankit import distributed
from gankit.registry import Registry

if TYPE_CHECKING:
    from gankit.checkpoint import CheckpointDir
    from gankit.config import Config
    from gankit.data import BatchStream, Source
    from gankit.distributed import Dist
    from gankit.logs import RunLogger
    from gankit.perf import Perf


class Game(Protocol):
    """The loop's view of a game (see :class:`gankit.gan.Trainer` and gankit.translation.game)."""

    cfg: Config
    device: torch.device
    dist: Dist
    perf: Perf
    source: Source
    stream: BatchStream  # the stream that defines an epoch (train.epochs)
    step: int
    images_seen: int
    lr_scale: float
    rollbacks: int
    best_fid: float
    g: torch.nn.Module  # the generator whose size the start line reports
    d: torch.nn.Module
    auto_threads: bool  # train.threads auto on the CPU: the loop times G and D to choose
    saved_threads: int | None  # the thread count a resumed checkpoint trained with
    num_classes: int | None
    noise_horizon: int | None  # steps over which instance noise anneals, fixed at the run's start

    @property
    def logistic_d(self) -> bool:
        """Whether D's outputs are log-odds (health alarms read ``d_fake`` as a probability)."""

    def train_step(self, total: int | None) -> dict[str, torch.Tensor]:
        """One generator update and its discriminator updates; returns device tensors to log."""

    def before_step(self) -> None:
        """Work due before the next step (the self-conditioned GAN's reclustering)."""

    def diversity(self, z: torch.Tensor) -> float | None:
        """The collapse yardstick of the health monitor, or None where it means nothing."""

    def write_samples(self, z: torch.Tensor, run_dir: Path, logger: RunLogger | None) -> None:
        """The grid of ``samples/step_NNNNNN.png`` (and TensorBoard, given a logger)."""

    def sampling_net(self) -> torch.nn.Module:
        """Called before every checkpoint: bring sampling statistics up to date; returns the sampler."""

    def weights_finite(self) -> bool:
        """Whether every network's float weights and buffers are finite (checked before logs and saves)."""

    def set_lr_scale(self, scale: float, schedule: float = 1.0) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def meta(self, elapsed: float) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any], meta: dict[str, Any]) -> None: ...


def describe(game: Game) -> str:
    """One line with the run's resolved scale and speed settings (printed at the start)."""
    ctx, perf, bs = game.dist, game.perf, game.cfg.train.batch_size
    split = f"{ctx.world_size} processes x {bs // ctx.world_size} = {bs} images" if ctx.enabled else f"{bs} images"
    return (f"gankit: {split} per step on {game.device.type}; amp {perf.amp}, "
            f"channels_last {'on' if perf.channels_last else 'off'}, compile {perf.compile}")


def save_checkpoint(game: Game, ckpts: CheckpointDir, elapsed: float) -> Path:
    """Every process calls this: rank 0 writes the checkpoint (with every process's RNG states), the
    others wait until it is complete. Returns its path; a failed save raises in every process."""
    ctx = game.dist
    path = ckpts.path_for(game.step)
    if not ctx.enabled:
        game.sampling_net()  # checkpoints hold sampling-ready EMA statistics
        return ckpts.save(game.step, game.state_dict(), game.meta(elapsed))
    gathered: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    torch.distributed.gather_object(game.state_dict()["rng"], gathered, dst=0, group=ctx.control)
    error: BaseException | None = None
    if ctx.is_main:
        try:
            game.sampling_net()
            state = game.state_dict()
            state["rng"] = {**state["rng"], "ranks": gathered}
            path = ckpts.save(game.step, state, game.meta(elapsed))
        except Exception as exc:  # tell the others before raising, or they wait for rank 0 forever
            error = exc
    (failed,) = distributed.any_of(ctx, error is not None)
    if error is not None:
        raise error
    if failed:
        from gankit.train import TrainError

        raise TrainError(f"rank 0 could not write the checkpoint of step {game.step}; see its error")
    return path


GameFactory = Callable[["Config", torch.device, "Dist"], Game]
GAMES: Registry[GameFactory] = Registry("game")
