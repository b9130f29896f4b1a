"""A small name -> factory registry, one per extension axis (models, objectives, datasets)."""
from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; duplicate names raise, unknown names suggest the closest."""

    def __init__(self, kind: str, builtin: tuple[str, ...] = ()) -> None:
        """``builtin``: modules of gankit's own entries, imported when the registry is first asked (so the
        module that holds the registry need not import what registers in it)."""
        self.kind = kind
        self._items: dict[str, T] = {}
        self._builtin = builtin

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name not in self:
            raise KeyError(unknown_name_message(self.kind, name, self.names(), plugins=True))
        return self._items[name]

    def names(self) -> list[str]:
        self._load_builtin()
        self._plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_builtin()
        if name not in self._items:
            self._plugins()
        return name in self._items

    def _load_builtin(self) -> None:
        modules, self._builtin = self._builtin, ()
        for module in modules:
            importlib.import_module(module)

    @staticmethod
    def _plugins() -> None:
        # installed packages' models, objectives, ... register when first asked for a name gankit lacks
        from gankit.plugins import load_entry_points

        load_entry_points()


def unknown_name_message(kind: str, name: str, choices: list[str], plugins: bool = False) -> str:
    """``plugins``: the registry takes names from outside gankit, so the name may be the user's own: say
    how to bring it in."""
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    message = f"unknown {kind} {name!r}{hint} (choices: {', '.join(choices)})"
    if plugins:
        from gankit.plugins import HINT

        message += f"; {HINT}"
    return message
