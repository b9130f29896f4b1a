"""The generator folder format: ``config.json``, ``model.safetensors`` and a model card ``README.md``, in
the layout of huggingface_hub's ``PyTorchModelHubMixin`` (gankit.hub's ``GankitGenerator``). Every value
and tensor header is checked before a weight is read. The package's model zoo (``zoo:NAME``) is made of
such folders. Apart from gankit.hub, which loads them through ``load_generator``, so that loading needs
neither the Hub class nor huggingface_hub.
"""
from __future__ import annotations

import json
import reprlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gankit.checkpoint import CheckpointDir, CheckpointError, atomic_write_bytes, state_mismatch

if TYPE_CHECKING:
    from gankit.config import Config
    from gankit.generator import LoadedGenerator

FORMAT = "gankit-generator"
VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"  # huggingface_hub.constants.SAFETENSORS_SINGLE_FILE
FOLDER_FILES = (CONFIG_NAME, WEIGHTS_NAME, "README.md", "samples.png")  # what gankit export --format hf writes
ZOO = Path(__file__).resolve().parent / "zoo"


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


def read_folder(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], Config]:
    """(generator weights without the ``net.`` prefix, checked meta, its run config) of a generator folder.

    Every value of ``config.json`` is checked, then the names, shapes and dtypes of the tensors in the
    ``model.safetensors`` header against the generator the config describes, built on the meta device,
    before any tensor is read or any weight allocated. Damage is refused with the file named."""
    path = Path(path)
    if CheckpointDir(path / "checkpoints").latest() is not None:
        # a run directory an hf export was written into: its checkpoints may be newer than the export
        raise CheckpointError(f"{path} holds both a training run's checkpoints and an hf export ({CONFIG_NAME}, "
                              f"{WEIGHTS_NAME}); use {path / 'checkpoints'} for the run, or move the export's "
                              "files into a folder of their own")
    meta = read_config(path)
    cfg = _run_config(meta, path / CONFIG_NAME)
    weights = _read_weights(path / WEIGHTS_NAME, _expected_state(cfg, meta, path / CONFIG_NAME))
    return weights, meta, cfg


def read_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a generator folder, every key present with a value of its type and range."""
    file = Path(path) / CONFIG_NAME
    try:
        meta = json.loads(file.read_bytes())
    except RecursionError:
        raise CheckpointError(f"{file}: not a gankit config (nested too deeply)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{file}: not a readable gankit config ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{file} is not a gankit generator (format {_short(found)})")
    version = meta.get("version")
    if not _is_int(version) or version < 1:
        raise CheckpointError(f"{file}: invalid version {_short(version)} (a whole number from 1)")
    if version > VERSION:
        raise CheckpointError(f"{file}: version {version}; this gankit reads up to {VERSION} (upgrade gankit)")
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{file} lacks {', '.join(missing)}")
    unknown = [k for k in meta if k not in _META_KEYS]
    if unknown:
        raise CheckpointError(f"{file}: unknown key {_short(unknown[0])} (gankit writes {', '.join(_META_KEYS)})")
    problem = _meta_problem(meta)
    if problem:
        raise CheckpointError(f"{file}: {problem}")
    return meta


_META_KEYS = ("format", "version", "run_config", "data_shape", "num_classes", "prior", "step", "is_ema")
_MAX_SIDE = 65536  # of a data_shape entry: far beyond data.resolution's 2048, small enough to multiply safely
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    """A value from a file for an error line: its repr, cut short (files can hold huge or nested values)."""
    return reprlib.repr(value)


def _share(value: Any) -> bool:
    """A cluster share: a number in [0, 1] (JSON also parses NaN, Infinity and integers of any size)."""
    return (isinstance(value, float) or _is_int(value)) and 0 <= value <= 1


def _meta_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with the values of a ``config.json`` (None: nothing)."""
    if not isinstance(meta["run_config"], dict):
        return f"run_config must be an object (the run's config), got {_short(meta['run_config'])}"
    shape = meta["data_shape"]
    if not (isinstance(shape, list) and len(shape) in (1, 3) and all(_is_int(n) and 1 <= n <= _MAX_SIDE
                                                                     for n in shape)):
        return (f"data_shape must be [dimensions] (points) or [channels, height, width] (images) of whole numbers "
                f"from 1 to {_MAX_SIDE}, got {_short(shape)}")
    classes = meta["num_classes"]
    if classes is not None and not (_is_int(classes) and 1 <= classes <= _MAX_SIDE):
        return f"num_classes must be null or a whole number from 1 to {_MAX_SIDE}, got {_short(classes)}"
    prior = meta["prior"]
    if prior is not None:
        if not (isinstance(prior, list) and prior and all(_share(p) for p in prior) and sum(prior) > 0):
            return f"prior must be null or a list of cluster shares in [0, 1], not all 0, got {_short(prior)}"
        if len(prior) != classes:
            return f"prior holds {len(prior)} cluster shares for num_classes {classes}"
    step = meta["step"]
    if not (_is_int(step) and 0 <= step < 2**63):
        return f"step must be a whole number >= 0, got {_short(step)}"
    if not isinstance(meta["is_ema"], bool):
        return f"is_ema must be true or false, got {_short(meta['is_ema'])}"
    return None


def _run_config(meta: dict[str, Any], file: Path) -> Config:
    """The run config of a checked ``config.json``, consistent with its num_classes and prior."""
    from gankit.config import ConfigError, from_dict

    try:
        cfg = from_dict(meta["run_config"])
    except ConfigError as exc:
        raise CheckpointError(f"{file}: run_config: {str(exc).removeprefix('config: ')}") from None
    conditioned = bool(cfg.model.conditional) or cfg.model.self_condition > 0
    if conditioned != (meta["num_classes"] is not None):
        raise CheckpointError(f"{file}: num_classes must be given exactly when run_config sets "
                              f"model.conditional or model.self_condition; it is {_short(meta['num_classes'])}")
    if (meta["prior"] is not None) != (cfg.model.self_condition > 0):
        raise CheckpointError(f"{file}: prior (the cluster shares) must be given exactly when run_config sets "
                              f"model.self_condition; it is {'null' if meta['prior'] is None else 'a list'}")
    return cfg


def _expected_state(cfg: Config, meta: dict[str, Any], file: Path) -> dict[str, torch.Tensor]:
    """The state dict of the generator ``config.json`` describes, on the meta device: shapes, no memory."""
    from gankit.config import ConfigError
    from gankit.models import build_generator

    try:
        with torch.device("meta"):
            net = build_generator(cfg.model.generator, cfg.model.latent_dim, tuple(meta["data_shape"]),
                                  meta["num_classes"])
    except ConfigError as exc:
        raise CheckpointError(f"{file}: run_config: {str(exc).removeprefix('config: ')}") from None
    return net.state_dict()


def _read_weights(file: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of ``file``, once the names, shapes and dtypes of its header match ``expected``."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), "pt") as f:
            header = {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in f.keys()}
            problem = _header_problem(header, expected)
            if problem:
                raise CheckpointError(f"{file} does not fit the generator {CONFIG_NAME} describes: {problem}")
            return {k[len("net."):]: f.get_tensor(k) for k in header}
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own types for truncated or malformed files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{file} is damaged ({first})") from None


def _header_problem(header: dict[str, tuple[str, tuple[int, ...]]], expected: dict[str, torch.Tensor]) -> str | None:
    """What keeps tensors of these (dtype, shape)s from loading into a module whose state is ``expected``."""
    if any(not k.startswith("net.") for k in header):
        return "tensors outside net.* (not written by gankit export)"
    unknown = sorted(dtype for dtype, _ in header.values() if dtype not in _DTYPES)
    if unknown:
        return f"unsupported dtype {unknown[0]}"
    described = {k[len("net."):]: torch.empty(shape, dtype=_DTYPES[dtype], device="meta")
                 for k, (dtype, shape) in header.items()}
    mismatch = state_mismatch(expected, described)
    if mismatch:
        return mismatch
    wrong = [f"{k}: file {str(described[k].dtype).removeprefix('torch.')} vs model "
             f"{str(t.dtype).removeprefix('torch.')}" for k, t in expected.items() if described[k].dtype != t.dtype]
    return f"dtype mismatch {', '.join(wrong[:3])}" if wrong else None


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
