"""What pix2pix and CycleGAN share as games: named networks, one optimizer for the generators and one
for the discriminators, batch streams, random streams, and the checkpoint layout."""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import torch
import torch.nn as nn

from gankit import __version__, distributed, streams
from gankit.checkpoint import CheckpointError
from gankit.config import Config, ConfigError
from gankit.data import BatchStream, TensorSource
from gankit.distributed import Dist
from gankit.models.init import init_weights
from gankit.objectives import Objective, build_objective
from gankit.optim import build_optimizers, lr_factor, set_learning_rates
from gankit.perf import Perf, backward_step
from gankit.sampling import load_weights


def check_settings(cfg: Config) -> None:
    """What the translation games do not do (yet), refused before anything is built."""
    problems = {
        "train.d_steps": (cfg.train.d_steps != 1, "one D update per G update"),
        "train.ema_decay": (cfg.train.ema_decay > 0, "no EMA of the generators (set 0)"),
        "train.augment": (bool(cfg.train.augment), "no DiffAugment (set '')"),
        "eval.every": (cfg.eval.every > 0, "no in-training evaluation; measure the run with `gankit eval RUN`"),
        "data.normalize": (cfg.data.normalize != "symmetric", "images in [-1, 1] (tanh outputs): symmetric"),
        "perf.amp": (cfg.perf.amp not in ("auto", "fp32"), "float32 (auto resolves to fp32 for them)"),
        "perf.compile": (cfg.perf.compile, "eager networks (set false)"),
        "perf.sync_batchnorm": (cfg.perf.sync_batchnorm, "per-process BatchNorm (set false)"),
        "model.conditional": (cfg.model.conditional is True or cfg.model.self_condition > 0, "no class labels"),
        "model.pack": (cfg.model.pack != 1, "no packing (set 1)"),
        "optim.beta2_final": (cfg.optim.beta2_final is not None, "a constant Adam beta2 (set null)"),
        "objective.gamma_final": (cfg.objective.gamma_final != 1.0, "constant penalties (set 1)"),
    }
    for key, (bad, what) in problems.items():
        if bad:
            raise ConfigError(f"config: {key}: the {cfg.game.name} game trains with {what}")


def checked_task(cfg: Config, kind: type) -> Any:
    """The run's task, after the settings check; ``kind``: the task class the game trains on."""
    from gankit.translation.tasks import build_task

    check_settings(cfg)
    task = build_task(cfg)
    assert isinstance(task, kind)
    return task


class TranslationGame:
    """Base of the image-to-image games: ``nets`` by name, G's and D's optimizers over the generators'
    and the discriminators' parameters, one batch stream per domain."""

    g_names: tuple[str, ...] = ("g",)
    d_names: tuple[str, ...] = ("d",)
    task: Any  # PairedTask or UnpairedTask, set by each game before this base's __init__

    def __init__(self, cfg: Config, device: torch.device, dist: Dist, nets: dict[str, nn.Module],
                 sources: dict[str, TensorSource]) -> None:
        self.cfg, self.device, self.dist, self.nets = cfg, device, dist, nets
        for net in nets.values():
            init_weights(net, cfg.model.init)
            net.to(device)
        distributed.broadcast_modules(dist, *nets.values())
        self.objective: Objective = build_objective(cfg.objective)
        self.opt_g, self.opt_d = build_optimizers(cfg.optim, nn.ModuleList([nets[k] for k in self.g_names]),
                                                  nn.ModuleList([nets[k] for k in self.d_names]))
        self.perf = Perf()
        try:
            self.streams = {name: BatchStream(src, cfg.train.batch_size, cfg.train.seed + i, device,
                                              cfg.data.num_workers, dist.rank, dist.world_size)
                            for i, (name, src) in enumerate(sources.items())}
        except ValueError as exc:
            raise ConfigError(f"config: train.batch_size: {exc}") from None
        self.stream = next(iter(self.streams.values()))
        self.source = self.stream.source
        self.data_origin = self.task.origin  # the start line's name of the data: a folder, not data.name
        self.rng, self.zrng = streams.random_streams(dist, cfg.train.seed, device)
        self.step, self.images_seen, self.lr_scale, self.rollbacks = 0, 0, 1.0, 0
        self.best_fid = math.inf
        # train.threads null: PyTorch's default (the loop's thread tuner times noise -> image nets only)
        self.auto_threads, self.saved_threads, self.num_classes = False, None, None
        self.noise_horizon: int | None = None  # instance noise is the noise -> image game's; kept for the loop

    @property
    def g(self) -> nn.Module:
        """The first generator (the start line reports its size)."""
        return self.nets[self.g_names[0]]

    @property
    def d(self) -> nn.Module:
        return self.nets[self.d_names[0]]

    @property
    def logistic_d(self) -> bool:
        return self.objective.logistic_d

    def before_step(self) -> None:
        pass

    def diversity(self, z: torch.Tensor) -> float | None:
        return None  # an image-to-image G collapses onto its input, not to one image: the L1/cycle terms watch it

    def sampling_net(self) -> nn.Module:
        return self.nets[self.g_names[0]]

    def weights_finite(self) -> bool:
        flags = [torch.isfinite(t).all() for net in self.nets.values() for t in [*net.parameters(), *net.buffers()]
                 if t.is_floating_point()]
        return bool(torch.stack(flags).all()) if flags else True

    def start_step(self, total: int | None) -> None:
        if self.cfg.optim.schedule != "constant":
            self.set_lr_scale(self.lr_scale, lr_factor(self.cfg.optim, self.step, total))

    def backward_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        backward_step(loss, opt, None, lambda o: distributed.average_gradients(self.dist, o))

    def set_lr_scale(self, scale: float, schedule: float = 1.0) -> None:
        self.lr_scale = scale
        set_learning_rates(self.cfg.optim, self.opt_g, self.opt_d, scale * schedule)

    def extra_state(self) -> dict[str, Any]:
        """Game-specific state beside networks, optimizers and RNG (CycleGAN's history pools)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {**{name: net.state_dict() for name, net in self.nets.items()},
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "rng": streams.rng_state(self), **self.extra_state()}

    def meta(self, elapsed: float) -> dict[str, Any]:
        from gankit.translation.tasks import task_meta

        return {"config": self.cfg.to_dict(), "game": self.cfg.game.name, "step": self.step,
                "task": task_meta(self.task),
                "images_seen": self.images_seen, "data": {k: s.state_dict() for k, s in self.streams.items()},
                "data_shape": list(self.source.shape), "lr_scale": self.lr_scale, "rollbacks": self.rollbacks,
                "best_fid": None, "world_size": self.dist.world_size, "perf": self.perf.describe(),
                "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
                "elapsed_seconds": elapsed, "gankit_version": __version__, "torch_version": torch.__version__,
                "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def load_state_dict(self, state: dict[str, Any], meta: dict[str, Any]) -> None:
        if meta.get("game") != self.cfg.game.name:
            raise CheckpointError(f"the checkpoint is of a {meta.get('game', 'gan')} run, not {self.cfg.game.name}")
        for name, net in self.nets.items():
            load_weights(net, state[name], name)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        streams.restore_rng(self, state["rng"])
        self.load_extra_state(state)
        for name, stream in self.streams.items():
            stream.load_state_dict(meta["data"][name])
        self.step, self.images_seen = int(meta["step"]), int(meta["images_seen"])
        self.rollbacks = int(meta.get("rollbacks", 0))
        self.set_lr_scale(float(meta.get("lr_scale", 1.0)))

    def batch(self, name: str) -> torch.Tensor:
        """The next uint8 batch of domain ``name`` (the stream's labels are row indices)."""
        _, index = self.stream_next(name)
        return self.streams[name].source.data[index]

    def stream_next(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, index = self.streams[name].next()
        assert index is not None
        return x, index


@torch.no_grad()
def run_eval(net: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``net`` in eval mode (BatchNorm's running statistics, no dropout) over ``x`` in batches."""
    was = net.training
    net.eval()
    try:
        return torch.cat([net(chunk) for chunk in x.split(batch_size)])
    finally:
        net.train(was)


def write_rows(rows: list[torch.Tensor], path: Any, logger: Any, step: int, scale: int = 1) -> None:
    """A grid of model-range image rows (input | output | target ...), each row one batch of equal size;
    smaller inputs (super-resolution) are shown enlarged by pixel repetition."""
    from gankit.sampling import image_grid, save_image_grid

    side = max(r.shape[-1] for r in rows)
    channels = max(r.shape[1] for r in rows)
    shown = [torch.nn.functional.interpolate(r, size=(side, side), mode="nearest").expand(-1, channels, -1, -1)
             for r in rows]
    images = torch.cat(shown).cpu()
    save_image_grid(images, "symmetric", path, len(rows[0]), scale)
    if logger is not None:
        logger.image(step, image_grid(images, "symmetric", len(rows[0])))
