"""Generator folders in the layout of huggingface_hub's ``PyTorchModelHubMixin``: ``config.json``,
``model.safetensors`` and a model card ``README.md``.

The same folder loads three ways: ``gankit.load_generator(folder)`` (gankit's sampling tools, no
huggingface_hub needed), ``GankitGenerator.from_pretrained(folder or repo id)`` (huggingface_hub's
loader) and ``gankit sample folder``. The package's model zoo (``zoo:NAME``) is made of such folders.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from gankit.checkpoint import CheckpointError, atomic_write_bytes

if TYPE_CHECKING:
    from gankit.sampling import LoadedGenerator

FORMAT = "gankit-generator"
VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"  # huggingface_hub.constants.SAFETENSORS_SINGLE_FILE
ZOO = Path(__file__).resolve().parent / "zoo"

try:  # an optional extra: the folder format itself needs only safetensors
    from huggingface_hub import PyTorchModelHubMixin

    _BASES: tuple[type, ...] = (nn.Module, PyTorchModelHubMixin)
    _HUB: dict[str, Any] = {"library_name": "gankit", "tags": ["gan", "gankit", "image-generation"]}
except ImportError:  # pragma: no cover - the tests install the extra
    _BASES, _HUB = (nn.Module,), {}


class GankitGenerator(*_BASES, **_HUB):  # type: ignore[misc]
    """A gankit generator as a Hub model: ``GankitGenerator.from_pretrained(folder_or_repo)`` rebuilds it
    from ``config.json`` (its arguments) and ``model.safetensors`` (its weights, under ``net.``).
    ``forward(z, y=None)`` returns images in the range ``run_config["data"]["normalize"]`` names."""

    def __init__(self, run_config: dict, data_shape: list, num_classes: int | None = None,
                 prior: list | None = None, step: int = 0, is_ema: bool = True,
                 format: str = FORMAT, version: int = VERSION) -> None:  # noqa: A002 (the JSON key)
        super().__init__()
        if format != FORMAT or not isinstance(version, int) or version > VERSION:
            raise CheckpointError(f"config.json describes {format!r} version {version!r}; this gankit reads "
                                  f"{FORMAT} up to version {VERSION}")
        from gankit.config import from_dict
        from gankit.models import build_generator

        self.run_config, self.data_shape = run_config, tuple(data_shape)
        self.num_classes, self.prior, self.step, self.is_ema = num_classes, prior, step, is_ema
        cfg = from_dict(run_config)
        self.net = build_generator(cfg.model.generator, cfg.model.latent_dim, self.data_shape, num_classes)
        self.net.eval()

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z, y)


def folder_meta(gen: LoadedGenerator) -> dict[str, Any]:
    """The ``config.json`` of a generator: the constructor arguments of :class:`GankitGenerator`."""
    return {"format": FORMAT, "version": VERSION, "run_config": gen.config.to_dict(),
            "data_shape": list(gen.data_shape), "num_classes": gen.num_classes,
            "prior": None if gen.prior is None else [float(p) for p in gen.prior], "step": gen.step,
            "is_ema": gen.is_ema}


def is_generator_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def save_folder(gen: LoadedGenerator, out: str | Path, card: str | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (and ``README.md`` = ``card``) into ``out``."""
    from safetensors.torch import save

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; an hf export is a folder")
    weights = {f"net.{k}": v.detach().to("cpu", copy=True).contiguous() for k, v in gen.net.state_dict().items()}
    atomic_write_bytes(out / WEIGHTS_NAME, save(weights, metadata={"format": "pt"}))
    atomic_write_bytes(out / CONFIG_NAME, (json.dumps(folder_meta(gen), indent=2) + "\n").encode())
    if card is not None:
        atomic_write_bytes(out / "README.md", card.encode())
    return out


def read_folder(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(generator weights without the ``net.`` prefix, meta) of a generator folder; damage is named."""
    from safetensors.torch import load

    path = Path(path)
    try:
        meta = json.loads((path / CONFIG_NAME).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path / CONFIG_NAME}: not a readable gankit config ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path / CONFIG_NAME} is not a gankit generator (format {found!r})")
    if not isinstance(meta.get("version"), int) or meta["version"] > VERSION:
        raise CheckpointError(f"{path / CONFIG_NAME}: version {meta.get('version')!r}; this gankit reads up "
                              f"to {VERSION} (upgrade gankit)")
    missing = [k for k in ("run_config", "data_shape", "step") if k not in meta]
    if missing:
        raise CheckpointError(f"{path / CONFIG_NAME} lacks {', '.join(missing)}")
    try:
        raw = load((path / WEIGHTS_NAME).read_bytes())
    except Exception as exc:  # safetensors raises its own types for truncated files
        raise CheckpointError(f"{path / WEIGHTS_NAME} is damaged ({exc})") from None
    if any(not k.startswith("net.") for k in raw):
        raise CheckpointError(f"{path / WEIGHTS_NAME}: tensors outside net.* (not written by gankit export)")
    return {k[len("net."):]: v for k, v in raw.items()}, meta


def zoo_path(name: str) -> Path:
    """The folder of zoo entry ``name`` (``zoo:NAME`` on the command line)."""
    entries = zoo_names()
    if name not in entries:
        raise CheckpointError(f"no zoo model {name!r}; the zoo has: {', '.join(entries) or 'nothing'}")
    return ZOO / name


def zoo_names() -> list[str]:
    return sorted(p.name for p in ZOO.iterdir() if is_generator_folder(p)) if ZOO.is_dir() else []


def zoo_entry(name: str) -> dict[str, Any]:
    """What the zoo says about an entry: its config.json plus ``zoo.json`` (metrics, the config that trained it)."""
    folder = zoo_path(name)
    info = json.loads((folder / "zoo.json").read_text()) if (folder / "zoo.json").is_file() else {}
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return {"name": name, "folder": str(folder), "bytes": size, **info}
