"""Preset configs shipped inside the package (``gankit/configs``, the repository's ``configs/``), so a
plain ``pip install`` has them: ``gankit train mnist_dcgan``, ``gankit init mnist_dcgan``."""
from __future__ import annotations

import difflib
import shutil
from pathlib import Path

from gankit.config import Config, ConfigError, load

PRESETS = Path(__file__).resolve().parent / "configs"


def names() -> list[str]:
    """Every preset: the top-level ones by stem, the tutorials' as ``seeds/<stem>``."""
    if not PRESETS.is_dir():
        return []
    return sorted(p.relative_to(PRESETS).with_suffix("").as_posix() for p in
                  [*PRESETS.glob("*.yaml"), *PRESETS.glob("seeds/*.yaml")])


def preset_path(name: str) -> Path:
    """The YAML file of preset ``name`` (with or without ``.yaml``, a tutorial's with or without ``seeds/``);
    an unknown name suggests the closest."""
    stem = name[:-5] if name.endswith(".yaml") else name
    stem = stem[len("configs/"):] if stem.startswith("configs/") else stem
    known = names()
    for candidate in (stem, f"seeds/{stem}"):
        if candidate in known:
            return PRESETS / f"{candidate}.yaml"
    close = difflib.get_close_matches(stem, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"config: no file or preset named {name!r}{hint} (presets: {', '.join(known)})")


def resolve_config(arg: str) -> str:
    """A config argument as given: an existing file stays; otherwise a preset name (``mnist_dcgan``,
    ``seeds/seed004_dcgan_mnist`` or ``seed004_dcgan_mnist``), so the README's names work from any folder."""
    path = Path(arg)
    if path.exists():
        return arg
    try:
        return str(preset_path(arg))
    except ConfigError:
        if len(path.parts) > 1 or path.suffix:  # a path that is not there: its own "file not found"
            return arg
        raise


def load_config(config: str | Path, overrides: list[str] | None = None) -> Config:
    """A config file or preset name (as ``gankit train`` takes it), with dotted overrides, validated."""
    return load(resolve_config(str(config)), overrides)


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
