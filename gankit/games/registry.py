"""The registry of games, apart from the games themselves: the config validates ``game.name`` against it
without importing a game (gankit's own register when it is first asked; plug-ins' through gankit.plugins)."""
from __future__ import annotations

from typing import Any, Callable

from gankit.registry import Registry

GAMES: Registry[Callable[..., Any]] = Registry(
    "game", builtin=("gankit.games.noise_to_image", "gankit.games.pix2pix", "gankit.games.cyclegan",
                     "gankit.games.bigan"))
