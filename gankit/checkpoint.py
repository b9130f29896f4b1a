"""Checkpoints: tensors in safetensors, everything else as JSON in its header. No pickle, ever.

A checkpoint is one file, written to a temporary name, fsynced and renamed, so a crash leaves
either the old or the new file, never half of one. A SHA-256 of the tensor bytes in the metadata
catches files damaged afterwards.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

FORMAT = "gankit-checkpoint"
VERSION = 1
_MAX_HEADER = 100 * 1024 * 1024


class CheckpointError(RuntimeError):
    """A file that is not a usable gankit checkpoint; the message says why."""


# ---------------------------------------------------------------------------------------------
# Nested state <-> (flat tensors, JSON skeleton)


def pack(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """Move every tensor of a nested state into ``tensors``; return a JSON-able skeleton."""
    if isinstance(obj, torch.Tensor):
        if prefix in tensors:  # e.g. {"a.b": t1, "a": {"b": t2}}: one would silently replace the other
            raise ValueError(f"two tensors of the state would be stored under the same name {prefix!r}")
        tensors[prefix] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, pack(v, tensors, f"{prefix}.{k}" if prefix else str(k))]
                             for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [pack(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def unpack(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        return {k: unpack(v, tensors) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, list):
        return [unpack(v, tensors) for v in skeleton]
    return skeleton


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Files


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic


def save_checkpoint(path: str | Path, state: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write a nested ``state`` (tensors anywhere inside) and JSON ``meta`` to one file, atomically."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = pack(state, tensors)
    header = {"format": FORMAT, "version": VERSION, "sha256": _digest(tensors),
              "state": skeleton, "meta": meta}
    data = st_save(tensors, metadata={"gankit": json.dumps(header)})
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc} "
                              "(the previous checkpoint is untouched)") from None
    return path


def _read_header(raw: bytes, path: Path) -> dict[str, Any]:
    # a safetensors header length can begin with byte 0x80 too; its JSON header then starts at byte 8
    if (raw[:1] == b"\x80" or raw[:2] == b"PK") and raw[8:9] != b"{":
        raise CheckpointError(f"{path} looks like a pickle / torch.save file; gankit never unpickles "
                              "files (they can run code) and reads only its own safetensors checkpoints")
    if len(raw) < 8:
        raise CheckpointError(f"{path} is not a gankit checkpoint (file too short: {len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > min(_MAX_HEADER, len(raw) - 8):
        raise CheckpointError(f"{path} is not a gankit checkpoint (no safetensors header)")
    try:
        header = json.loads(raw[8:8 + n])
        info = json.loads(header["__metadata__"]["gankit"])
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{path} is not a gankit checkpoint (safetensors without gankit metadata)"
                              ) from None
    if info.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gankit checkpoint (format {info.get('format')!r})")
    if info.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer gankit (checkpoint version "
                              f"{info['version']}, this gankit reads up to {VERSION}); upgrade gankit")
    return info


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read and verify a checkpoint: returns (nested state, meta). Damage raises CheckpointError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    info = _read_header(raw, path)
    try:
        tensors = st_load(raw)
    except Exception as exc:  # safetensors raises its own error types for truncated data
        raise CheckpointError(f"{path} is damaged (truncated or corrupt tensor data: {exc})") from None
    if _digest(tensors) != info["sha256"]:
        raise CheckpointError(f"{path} is damaged: its tensors do not match the checksum in its header")
    if str(map_location) != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    return unpack(info["state"], tensors), info["meta"]


# ---------------------------------------------------------------------------------------------
# A run's checkpoint directory


class CheckpointDir:
    """``step_XXXXXXXX.safetensors`` files, the newest ``keep`` kept, ``latest.json`` naming the last."""

    def __init__(self, root: str | Path, keep: int = 3) -> None:
        self.root = Path(root)
        self.keep = keep

    def path_for(self, step: int) -> Path:
        return self.root / f"step_{step:08d}.safetensors"

    def all(self) -> list[Path]:
        return sorted(self.root.glob("step_*.safetensors")) if self.root.is_dir() else []

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any]) -> Path:
        path = save_checkpoint(self.path_for(step), state, meta)
        atomic_write_bytes(self.root / "latest.json", json.dumps({"file": path.name, "step": step}).encode())
        for old in self.all()[:-self.keep]:
            old.unlink(missing_ok=True)
        return path

    def save_best(self, state: dict[str, Any], meta: dict[str, Any]) -> Path:
        """``best.safetensors``: outside the keep-last-k rotation, replaced atomically when beaten."""
        return save_checkpoint(self.root / "best.safetensors", state, meta)

    def latest(self) -> Path | None:
        """The checkpoint named by latest.json, else the newest file present."""
        pointer = self.root / "latest.json"
        try:
            name = json.loads(pointer.read_text())["file"]
            if (self.root / name).is_file():
                return self.root / name
        except (OSError, ValueError, KeyError, TypeError):
            pass
        files = self.all()
        return files[-1] if files else None


def resolve(path: str | Path) -> Path:
    """A checkpoint file from a checkpoint path, a run directory or its checkpoints/ folder."""
    path = Path(path)
    if path.is_file():
        return path
    for folder in (path / "checkpoints", path):
        found = CheckpointDir(folder).latest() if folder.is_dir() else None
        if found is not None:
            return found
    if not path.exists():
        raise CheckpointError(f"no such file or directory: {path}")
    raise CheckpointError(f"no checkpoint found in {path}")
