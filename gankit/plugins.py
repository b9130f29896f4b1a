"""Models, objectives, datasets and games from outside gankit: entry points and ``--import MODULE``.

A package registers its own with the registries' decorators at import time and declares the module
in its ``pyproject.toml``; every command (and the Python API) imports it the first time a registry
is asked for a name it does not hold:

    [project.entry-points."gankit.plugins"]
    my_models = "my_package.gan_models"

A script of one's own, not installed, is named on the command line instead: ``--import mymodels``
(a module on the current directory or PYTHONPATH) or ``--import path/to/mymodels.py``.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

GROUP = "gankit.plugins"
HINT = (f"your own? pass --import MODULE (the module that registers it), or install a package that declares it "
        f"under the {GROUP!r} entry point")


class PluginError(ValueError):
    """A plugin that cannot be imported: the CLI prints it as one line."""


_entry_points_loaded = False


def load_entry_points() -> list[str]:
    """Import every installed ``gankit.plugins`` entry point, once per process; their names."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return []
    _entry_points_loaded = True  # before importing: a plugin that asks a registry must not recurse
    names = []
    for ep in entry_points(group=GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken third-party package: name it, whatever it raised
            raise PluginError(f"plugin {ep.name!r} ({ep.value}, entry point {GROUP!r}) failed to import: "
                              f"{type(exc).__name__}: {exc}") from None
        names.append(ep.name)
    return names


def import_module(name: str) -> None:
    """``--import``: a module name (searched on the current directory first) or a ``.py`` file."""
    path = Path(name)
    try:
        if path.suffix == ".py" or len(path.parts) > 1:
            if not path.is_file():
                raise PluginError(f"--import {name}: no such file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
            return
        # the console script's sys.path lacks the current directory, where a user's own module lives
        sys.path.insert(0, str(Path.cwd()))
        try:
            importlib.import_module(name)
        finally:
            sys.path.remove(str(Path.cwd()))
    except PluginError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name == name.split(".")[0]:
            raise PluginError(f"--import {name}: no module named {name!r} here or on PYTHONPATH") from None
        raise PluginError(f"--import {name} failed: {exc}") from None
    except Exception as exc:
        raise PluginError(f"--import {name} failed: {type(exc).__name__}: {exc}") from None
