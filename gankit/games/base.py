"""What a game is: its networks, their optimizers, its losses as named phases, its random streams and data.

The loop (gankit.train) owns the run (:class:`gankit.run_state.RunState`) and calls :func:`gankit.games.phases.
train_step`, which does every game's optimizer mechanics; a game only computes each phase's loss. :class:`Game`
is the interface; a game is one file whose class subclasses :class:`GameBase` (the shared state code) and
whose factory registers in :data:`GAMES` (see "Add your own game" in the README): ``game.name`` picks it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, runtime_checkable

import torch
import torch.nn as nn

from gankit import distributed, streams
from gankit.checkpoint import CheckpointError
from gankit.config import ConfigError
from gankit.perf import Perf
from gankit.games.registry import GAMES

if TYPE_CHECKING:
    from gankit.config import Config
    from gankit.data import BatchStream, Source
    from gankit.distributed import Dist
    from gankit.logs import RunLogger
    from gankit.objectives import Objective
    from gankit.run_state import RunState

Stats = dict[str, torch.Tensor]
NET_TITLES = {"g": "generator", "d": "discriminator", "g_ema": "EMA generator"}  # for messages
Carry = dict[str, Any]  # what one phase of a step hands the next (the fakes G's update reuses, ...)


@dataclass(frozen=True)
class Phase:
    """One optimizer update of a step: ``loss(run, carry, i)`` for its ``i``-th of ``repeat`` runs, then
    ``optimizer``'s step. ``trains`` get gradients, ``frozen`` networks none (G's update needs gradients
    through D, not for D's weights); ``after(run, stats)`` runs after the update (weight clipping, ADA's
    feedback, the EMA of G); ``counts_images``: each run adds a batch to the images seen."""

    name: str
    optimizer: str
    loss: Callable[[RunState, Carry, int], tuple[torch.Tensor, Stats]]
    trains: tuple[str, ...]
    frozen: tuple[str, ...] = ()
    repeat: int = 1
    after: Callable[[RunState, Stats], None] | None = None
    counts_images: bool = False


@dataclass
class GameData:
    """The data a game trains on: ``source`` (shape, kind) and its batch streams by name; the first one
    defines an epoch (train.epochs)."""

    source: Source
    streams: dict[str, BatchStream]
    origin: str  # how the start line names the data (a folder, not data.name)

    @property
    def stream(self) -> BatchStream:
        return next(iter(self.streams.values()))


@dataclass
class Runtime:
    """Where and how a game's networks run: this process's device and place in a multi-process run, and the
    resolved speed settings (autocast, channels-last, compiled forwards, fp16 gradient scalers)."""

    device: torch.device
    dist: Dist
    perf: Perf = field(default_factory=Perf)


class Game(Protocol):
    """What the loop (gankit.train), the playground and checkpoints need of a game: twelve members. A game
    holds its networks, optimizers, losses and random streams; the run's state is the loop's (RunState)."""

    cfg: Config  # resolved (model.conditional auto decided against the data)
    runtime: Runtime
    nets: dict[str, nn.Module]  # every network a checkpoint holds; the first two: the start line's G and D
    optimizers: dict[str, torch.optim.Optimizer]  # "g" and "d", as optim.lr_g / lr_d set them
    data: GameData
    phases: tuple[Phase, ...]  # one step: each phase in order (gankit.games.phases does the mechanics)

    def begin_step(self, run: RunState) -> Carry:
        """Set what the schedules say for this step (functions of ``run.step`` alone: resume is exact)."""

    def sampling_net(self) -> nn.Module:
        """Called before every checkpoint: bring sampling statistics up to date; returns the sampler."""

    def write_samples(self, z: torch.Tensor, step: int, run_dir: Path, logger: RunLogger | None) -> None:
        """The grid of ``step`` (:func:`sample_path`; TensorBoard and trackers given a logger)."""

    def state_dict(self) -> dict[str, Any]:
        """The tensors a checkpoint holds: networks, optimizers, random streams, the game's own."""

    def load_state_dict(self, state: dict[str, Any], meta: dict[str, Any]) -> None: ...

    def meta(self) -> dict[str, Any]:
        """The game's part of a checkpoint's metadata (JSON); ``conditioning`` feeds the start line."""


@runtime_checkable
class Monitored(Protocol):
    """A game whose samples the health monitor can check for collapse."""

    def diversity(self, z: torch.Tensor) -> float | None:
        """Spread of G's samples over the real data's: ~1 healthy, ~0 collapsed (None: not measurable yet)."""


@runtime_checkable
class ThreadTimed(Protocol):
    """A game whose step the loop can time on copies of its networks (train.threads auto on the CPU)."""

    def probe_work(self) -> Callable[[], None]: ...


@dataclass
class GameBase:
    """The state code every game shares (checkpoint layout, random streams, learning rates); a game
    subclasses it, sets ``name`` and ``phases`` and writes its losses and grids."""

    name: ClassVar[str]
    # "g" draws images from model.latent_dim latents: `gankit sample`, `eval` and `compare` load it as such
    draws_from_noise: ClassVar[bool] = False
    cfg: Config
    runtime: Runtime
    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    data: GameData
    phases: tuple[Phase, ...] = ()
    rng: torch.Generator = field(default_factory=torch.Generator)  # latents, noise, masks, pools
    zrng: torch.Generator | None = None  # multi-process: the latent stream all processes share
    objective: Objective | None = None  # the adversarial loss (gankit.objectives)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def dist(self) -> Dist:
        return self.runtime.dist

    @property
    def perf(self) -> Perf:
        return self.runtime.perf

    @property
    def source(self) -> Source:
        return self.data.source

    @property
    def stream(self) -> BatchStream:
        return self.data.stream

    def draw_latents(self, n: int) -> torch.Tensor:
        """The latents of a global batch of ``n``; a process of a multi-process run keeps its slice."""
        if self.zrng is None:
            return torch.randn(n, self.cfg.model.latent_dim, generator=self.rng, device=self.device)
        z = torch.randn(n, self.cfg.model.latent_dim, generator=self.zrng, device=self.device)
        b = n // self.dist.world_size
        return z[self.dist.rank * b:(self.dist.rank + 1) * b]

    def begin_step(self, run: RunState) -> Carry:
        from gankit.optim import lr_factor

        if self.cfg.optim.schedule != "constant":
            set_lr(self, run.lr_scale * lr_factor(self.cfg.optim, run.step, run.total))
        return {}

    def sampling_net(self) -> nn.Module:
        return next(iter(self.nets.values()))

    def write_samples(self, z: torch.Tensor, step: int, run_dir: Path, logger: RunLogger | None) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {**{name: net.state_dict() for name, net in self.nets.items()},
                **{f"opt_{k}": opt.state_dict() for k, opt in self.optimizers.items()},
                "rng": streams.rng_state(self), **self.perf.state_dict()}

    def meta(self) -> dict[str, Any]:
        return {"config": self.cfg.to_dict(), "game": self.name, "noise_to_image": self.draws_from_noise,
                "data": {k: s.state_dict() for k, s in self.data.streams.items()},
                "data_shape": list(self.data.source.shape), "perf": self.perf.describe()}

    def load_state_dict(self, state: dict[str, Any], meta: dict[str, Any]) -> None:
        from gankit.sampling import load_weights

        if meta.get("game", "gan") != self.name:
            raise CheckpointError(f"the checkpoint is of a {meta.get('game', 'gan')} run, not {self.name}")
        for name, net in self.nets.items():
            if state.get(name) is None:
                raise CheckpointError(f"the checkpoint has no {NET_TITLES.get(name, name)} but the config asks "
                                      "for one")
            load_weights(net, state[name], NET_TITLES.get(name, name))
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state[f"opt_{k}"])
        streams.restore_rng(self, state["rng"])  # multi-process: each process's own streams
        self.perf.load_state_dict(state)
        for name, stream in self.data.streams.items():
            stream.load_state_dict(meta["data"][name])


def set_lr(game: Game, factor: float) -> None:
    """Learning rates = configured x ``factor`` (rollbacks' scale x the schedule's)."""
    from gankit.optim import set_learning_rates

    set_learning_rates(game.cfg.optim, game.optimizers["g"], game.optimizers["d"], factor)


def weights_finite(game: Game) -> bool:
    """Whether every float weight and buffer of every network is finite (one device sync)."""
    flags = [torch.isfinite(t).all() for net in game.nets.values() for t in [*net.parameters(), *net.buffers()]
             if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def refuse(cfg: Config, problems: dict[str, tuple[bool, str]]) -> None:
    """What a game does not do (yet), refused before anything is built: ``problems`` maps a config key to
    (whether this config asks for it, what the game does instead)."""
    for key, (bad, what) in problems.items():
        if bad:
            raise ConfigError(f"config: {key}: the {cfg.game.name} game trains with {what}")


def assemble(cls: type, cfg: Config, runtime: Runtime, nets: dict[str, nn.Module], groups: tuple[tuple[str, ...], ...],
             sources: dict[str, Source], origin: str, **fields: Any) -> Any:
    """A game ``cls`` from its networks: initialised by model.init, placed, the same in every process, the
    "g" optimizer over the networks of ``groups[0]`` and "d" over those of ``groups[1]``, a batch stream per
    source and the random streams; ``fields``: the game's own."""
    from gankit.models.init import init_weights
    from gankit.optim import build_optimizers

    for net in nets.values():
        init_weights(net, cfg.model.init)
        net.to(runtime.device)
    distributed.broadcast_modules(runtime.dist, *nets.values())
    g_nets, d_nets = (nn.ModuleList([nets[k] for k in names]) for names in groups)
    opt_g, opt_d = build_optimizers(cfg.optim, g_nets, d_nets)
    data = build_data(cfg, runtime, sources, origin)
    rng, zrng = streams.random_streams(runtime.dist, cfg.train.seed, runtime.device)  # after the models' init
    return cls(cfg, runtime, nets, {"g": opt_g, "d": opt_d}, data, rng=rng, zrng=zrng, **fields)


def sample_path(run_dir: Path, step: int) -> Path:
    return run_dir / "samples" / f"step_{step:06d}.png"


def build_game(cfg: Config, device: torch.device, dist: Dist) -> Game:
    return GAMES.get(cfg.game.name)(cfg, Runtime(device, dist))  # the config checked the name


def build_data(cfg: Config, runtime: Runtime, sources: dict[str, Source], origin: str) -> GameData:
    """One batch stream per named source (seeded train.seed + its position), each process its slice."""
    from gankit.data import BatchStream

    try:
        dist = runtime.dist
        named = {name: BatchStream(src, cfg.train.batch_size, cfg.train.seed + i, runtime.device,
                                   cfg.data.num_workers, dist.rank, dist.world_size)
                 for i, (name, src) in enumerate(sources.items())}
    except ValueError as exc:
        raise ConfigError(f"config: train.batch_size: {exc}") from None
    return GameData(next(iter(sources.values())), named, origin)
