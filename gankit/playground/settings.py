"""What the page may set, and how it becomes a gankit config: every value goes through gankit's own
validation (``from_dict`` and the model / dataset builders), so the page can send nothing a YAML file
could not, and the export is a YAML file ``gankit train`` reads."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from gankit.config import Config, ConfigError, from_dict, read_yaml

# The default 2D game: configs/ring.yaml's networks at half its width (64: about 1.3x the G steps/s of 128
# while playing; benchmarks/playground_speed.py, RESULTS.md) and its optimizer, with
# a constant learning rate, since a playground run has no last step to decay to.
BASE_2D: dict[str, Any] = {
    "data": {"name": "ring"},
    "model": {"latent_dim": 2, "init": "default",
              "generator": {"name": "mlp", "widths": [64, 64, 64], "activation": "relu", "output": "none"},
              "discriminator": {"name": "mlp", "widths": [64, 64, 64], "activation": "relu"}},
    "objective": {"name": "ns", "r1_gamma": 0.1, "r1_every": 16},
    "optim": {"lr_g": 1.0e-3, "lr_d": 1.0e-3, "betas_g": [0.0, 0.99], "betas_d": [0.0, 0.99]},
    "train": {"batch_size": 128, "ema_decay": 0.0, "threads": 1, "device": "cpu"},
}
DEFAULT_IMAGE_CONFIG = "mnist_dcgan.yaml"
PRESETS_2D = ("ring", "grid", "gaussians", "line", "moons", "points")
OBJECTIVES = ("ns", "minimax", "lsgan", "hinge", "wgan-gp", "rpgan")

# Page keys that change the game in place, as a person turning a knob mid-game expects; every other
# key (data, networks, batch, EMA, seed) starts a new game.
CONTINUE_KEYS = frozenset({"objective.name", "objective.r1_gamma", "objective.r2_gamma", "objective.gp_weight",
                           "optim.lr_g", "optim.lr_d", "optim.betas_g", "optim.betas_d", "train.d_steps"})
# Page conveniences that are not config keys: widths x depth of the 2D MLPs.
NET_KEYS = {"net.g_width": ("generator", 0), "net.g_depth": ("generator", 1),
            "net.d_width": ("discriminator", 0), "net.d_depth": ("discriminator", 1)}
PAGE_KEYS_2D = ("data.name", "data.points", "objective.name", "objective.r1_gamma", "objective.r2_gamma",
                "optim.lr_g", "optim.lr_d", "optim.betas_g", "optim.betas_d", "train.d_steps",
                "train.batch_size", "train.ema_decay", "train.seed", *NET_KEYS)
PAGE_KEYS_IMAGE = ("objective.name", "objective.r1_gamma", "objective.r2_gamma", "optim.lr_g", "optim.lr_d",
                   "optim.betas_g", "optim.betas_d", "train.d_steps", "train.batch_size", "train.ema_decay",
                   "train.seed")
MAX_WIDTH, MAX_DEPTH, MAX_POINTS = 1024, 8, 5000  # keeps a page value from freezing the machine
MAX_BATCH = 4096  # the 2D data holds 100,000 points: a batch of all of them is a 40 GB distance matrix
# The upper bound of every numeric page knob (the config's checks give the lower bounds and types); a
# value past one is refused by name. Within them, a combination whose step would cost more than the
# budget of gankit.playground.budget (time and memory) is refused too: no page value freezes the machine.
LIMITS: dict[str, float] = {
    "objective.r1_gamma": 1000.0, "objective.r2_gamma": 1000.0,  # published values go up to 100
    "optim.lr_g": 1.0, "optim.lr_d": 1.0,
    "train.d_steps": 100,  # WGAN's 5 and a wide margin: each D step is a full forward-backward
    "train.batch_size": MAX_BATCH,
    "train.ema_decay": 0.9999,  # an average over 10,000 steps, longer than a playground game
    "train.seed": 2**32 - 1,  # the config's own bound
    "net.g_width": MAX_WIDTH, "net.d_width": MAX_WIDTH, "net.g_depth": MAX_DEPTH, "net.d_depth": MAX_DEPTH,
}
# The knobs that change what a step costs, named when a combination is over the budget.
COST_KEYS = ("train.batch_size", "train.d_steps", *NET_KEYS, "objective.name", "objective.r1_gamma",
             "objective.r2_gamma")


ECHO_CHARS = 200  # the most of a request that a message quotes back


def short(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters: a message never echoes a whole request back."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def shown(value: Any, limit: int = 80) -> str:
    """A value from the page as a message quotes it: its repr, cut to ``limit`` characters."""
    return short(repr(value), limit)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _betas(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in value))


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node[part]
    return node


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config: {dotted}: {part} is not a section")
    node[last] = value


@dataclasses.dataclass
class Settings:
    """A playground game's configuration: a base (the 2D default or a preset YAML) and the page's changes."""

    mode: str  # "2d" or "image"
    base: dict[str, Any]
    source: str  # where the base came from, for the export's header
    changes: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def for_2d(cls) -> "Settings":
        return cls("2d", copy.deepcopy(BASE_2D), "the playground's 2D default")

    @classmethod
    def for_image(cls, path: Path) -> "Settings":
        raw = read_yaml(path)
        raw.setdefault("optim", {})["schedule"] = "constant"  # no last step to decay to
        return cls("image", raw, f"configs/{path.name}")

    @property
    def page_keys(self) -> tuple[str, ...]:
        return PAGE_KEYS_2D if self.mode == "2d" else PAGE_KEYS_IMAGE

    def tree(self, changes: dict[str, Any] | None = None) -> dict[str, Any]:
        """The config as a nested dict, with the page's changes (and ``changes``) applied."""
        tree = copy.deepcopy(self.base)
        for key, value in {**self.changes, **(changes or {})}.items():
            if key in NET_KEYS:
                continue
            _set(tree, key, copy.deepcopy(value))
        net = {**self.changes, **(changes or {})}
        for which in ("generator", "discriminator"):
            width_key, depth_key = f"net.{which[0]}_width", f"net.{which[0]}_depth"
            if width_key in net or depth_key in net:
                spec = tree["model"][which]
                widths = spec.get("widths") or [128]
                width = net.get(width_key, widths[0])
                depth = net.get(depth_key, len(widths))
                spec["widths"] = [width] * depth
        return tree

    def check(self, changes: dict[str, Any]) -> Config:
        """The validated config after ``changes``; raises ConfigError naming the key, changes nothing."""
        if not isinstance(changes, dict):
            raise ConfigError("settings: send an object of {key: value}")
        for key, value in changes.items():
            if key not in self.page_keys:
                raise ConfigError(f"settings: {short(str(key), 80)} cannot be set from the page in {self.mode} mode "
                                  f"(one of: {', '.join(self.page_keys)})")
            if key in NET_KEYS:
                limit = int(LIMITS[key])
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                    raise ConfigError(f"settings: {key} must be an integer from 1 to {limit}, got {shown(value)}")
            elif key in LIMITS and _number(value) and not value <= LIMITS[key]:  # NaN too
                bound = LIMITS[key]
                raise ConfigError(f"settings: {key} must be at most "
                                  f"{f'{int(bound):,}' if float(bound).is_integer() else f'{bound:g}'} in the "
                                  f"playground, got {shown(value)}")
            if key.startswith("optim.betas") and not _betas(value):
                raise ConfigError(f"settings: {key} must be two numbers in [0, 1), got {shown(value)}")
            if key == "data.points" and isinstance(value, list) and len(value) > MAX_POINTS:
                raise ConfigError(f"settings: data.points: at most {MAX_POINTS} points, got {len(value)}")
        if self.mode == "2d" and changes.get("data.name", "ring") not in PRESETS_2D:
            raise ConfigError(f"settings: data.name must be one of {', '.join(PRESETS_2D)}, "
                              f"got {shown(changes['data.name'])}")
        return from_dict(self.tree(changes))  # names (objective, model) are checked when built

    def apply(self, changes: dict[str, Any]) -> bool:
        """Record ``changes`` (already checked); True when they need a new game, False to continue."""
        self.changes.update(copy.deepcopy(changes))
        return any(key not in CONTINUE_KEYS for key in changes)

    def values(self) -> dict[str, Any]:
        """The current value of every page key, for the form."""
        tree = self.tree()
        out: dict[str, Any] = {}
        for key in self.page_keys:
            if key in NET_KEYS:
                which, part = NET_KEYS[key]
                widths = tree["model"][which].get("widths") or [128]
                out[key] = widths[0] if part == 0 else len(widths)
                continue
            try:
                out[key] = _get(tree, key)
            except (KeyError, TypeError):
                out[key] = _get(Config().to_dict(), key)
        return out


def config_diff(cfg: Config) -> dict[str, Any]:
    """The keys of ``cfg`` that differ from gankit's typed defaults, by section (a short YAML file)."""
    default, now = Config().to_dict(), cfg.to_dict()
    out: dict[str, Any] = {}
    for section, values in now.items():
        diff = {k: v for k, v in values.items() if v != default[section][k]}
        if diff:
            out[section] = diff
    return out


def export_yaml(cfg: Config, steps: int, source: str, reproducible: bool, note: str = "") -> str:
    """A gankit config of ``cfg`` for ``steps`` G steps; its header says whether it replays the game."""
    tree = config_diff(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps, epochs=None,
                                                                          max_seconds=None)))
    tree.setdefault("train", {})["steps"] = steps
    if reproducible:
        head = (f"# Exported by `gankit playground` at step {steps} (based on {source}).\n"
                f"# `gankit train` of this file reproduces the playground's game: the same {steps} steps, seed "
                f"{cfg.train.seed}.\n")
    else:
        head = (f"# Exported by `gankit playground` at step {steps} (based on {source}).\n"
                f"# The game was changed while it ran ({note}); this file trains the current settings from the "
                "start.\n")
    return head + yaml.safe_dump(tree, sort_keys=False, default_flow_style=None)
