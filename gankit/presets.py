"""Preset configs shipped inside the package (``gankit/configs``, the repository's ``configs/``), so a
plain ``pip install`` has them: ``gankit train mnist_dcgan``, ``gankit init mnist_dcgan``."""
from __future__ import annotations

import difflib
import shutil
from pathlib import Path

from gankit.config import ConfigError

PRESETS = Path(__file__).resolve().parent / "configs"


def names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml")) if PRESETS.is_dir() else []


def preset_path(name: str) -> Path:
    """The YAML file of preset ``name`` (with or without ``.yaml``); an unknown name suggests the closest."""
    stem = name[:-5] if name.endswith(".yaml") else name
    if stem in names():
        return PRESETS / f"{stem}.yaml"
    close = difflib.get_close_matches(stem, names(), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"config: no file or preset named {name!r}{hint} (presets: {', '.join(names())})")


def resolve_config(arg: str) -> str:
    """A config argument as given: an existing file stays; a bare name is a preset (``mnist_dcgan``)."""
    path = Path(arg)
    if path.exists() or len(path.parts) > 1:
        return arg
    return str(preset_path(arg))


def summary(path: Path) -> str:
    """The first comment line of a preset, which says what it trains."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def list_presets() -> list[tuple[str, str]]:
    return [(n, summary(PRESETS / f"{n}.yaml")) for n in names()]


def copy_preset(name: str, folder: Path, force: bool = False) -> Path:
    """Copy preset ``name`` into ``folder`` as ``<name>.yaml``; an existing file is kept unless ``force``."""
    src = preset_path(name)
    out = folder / src.name
    if out.exists() and not force:
        raise ValueError(f"{out} exists; pass --force to overwrite it")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out)
    return out
