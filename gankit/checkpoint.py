"""Checkpoints: tensors in safetensors, everything else as JSON in its header. No pickle, ever.

A checkpoint is one file, written to a temporary name, fsynced and renamed, so a crash leaves
either the old or the new file, never half of one; the temporary files of killed saves never match
``step_*.safetensors`` and are removed when a run directory is opened again. A SHA-256 in the header,
over the tensors and the rest of the header (state layout, config, step, data position), catches
files damaged or edited afterwards (version 1 files, whose checksum covers the tensors only, still load). SIGINT/SIGTERM arriving during a save are
held until the save is complete, so a second Ctrl-C cannot cut it short.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

FORMAT = "gankit-checkpoint"
VERSION = 2  # 2: the checksum covers the JSON header too; 1: the tensors only
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


def _digest(tensors: dict[str, torch.Tensor], header: dict[str, Any] | None = None) -> str:
    """SHA-256 of the tensors and (version 2) of ``header``'s state layout and meta, in canonical JSON:
    a header edited in place (a step, a data position, a config value) no longer matches."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    if header is not None:
        h.update(b"\0header\0")
        h.update(json.dumps({"state": header["state"], "meta": header["meta"]}, sort_keys=True,
                            separators=(",", ":")).encode())
    return h.hexdigest()


def nonfinite_weights(state: dict[str, Any], keys: tuple[str, ...] | None = None) -> list[str]:
    """The networks among ``keys`` (default: every entry, whatever the game calls its networks) of a state
    whose float weights or buffers hold NaN or Inf."""
    bad = []
    for key in state if keys is None else keys:
        weights = state.get(key)
        if isinstance(weights, dict) and any(
                isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())
                for t in weights.values()):
            bad.append(key)
    return bad


# ---------------------------------------------------------------------------------------------
# Files


_STEP_NAME = re.compile(r"step_\d{8,}\.safetensors")
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # mkstemp(prefix=".<name>.", suffix=".tmp")
_holding_signals = False


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them to the handlers they would have met.

    A no-op outside the main thread (only it may set handlers) and when nested.
    """
    global _holding_signals
    if _holding_signals or threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous = {sig: h for sig, h in previous.items() if h is not None}  # None: set outside Python, keep it
    for sig in previous:
        signal.signal(sig, lambda signum, frame: received.append(signum))
    _holding_signals = True
    try:
        yield
    finally:
        _holding_signals = False
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in received:
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that killed :func:`atomic_write_bytes` calls left in ``folder``."""
    stale = [p for p in folder.iterdir() if _TEMPORARY.match(p.name) and p.is_file()] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the target, not the temporary file or a parent folder
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            # mkstemp makes the file 0600; an export or a grid is for others to read, as any file the
            # user's umask allows
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
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
    # the digest is of the header as a reader parses it back (tuples as lists, keys as strings)
    body = json.loads(json.dumps({"state": skeleton, "meta": meta}))
    header = {"format": FORMAT, "version": VERSION, "sha256": _digest(tensors, body), **body}
    data = st_save(tensors, metadata={"gankit": json.dumps(header)})
    try:
        with signals_held():
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
    if not raw:
        raise CheckpointError(f"{path} is empty (0 bytes), not a gankit checkpoint")
    if len(raw) < 8:
        raise CheckpointError(f"{path} is not a gankit checkpoint (file too short: {len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > min(_MAX_HEADER, len(raw) - 8):
        raise CheckpointError(f"{path} is not a gankit checkpoint (no safetensors header)")
    try:
        header = json.loads(raw[8:8 + n])
        info = json.loads(header["__metadata__"]["gankit"])
    except RecursionError:
        raise CheckpointError(f"{path} is not a gankit checkpoint (its header is nested too deeply)") from None
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{path} is not a gankit checkpoint (safetensors without gankit metadata)"
                              ) from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        found = info.get("format") if isinstance(info, dict) else None
        raise CheckpointError(f"{path} is not a gankit checkpoint (format {found!r})")
    if not isinstance(info.get("version", 0), int):
        raise CheckpointError(f"{path} is not a gankit checkpoint (version {info['version']!r})")
    if info.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer gankit (checkpoint version "
                              f"{info['version']}, this gankit reads up to {VERSION}); upgrade gankit")
    if "sha256" not in info:  # every gankit version wrote one: refuse rather than trust unverified tensors
        raise CheckpointError(f"{path} has no checksum in its gankit header (every gankit checkpoint has "
                              "one): it was edited or written by another tool; refusing to load it")
    missing = [k for k in ("state", "meta") if k not in info]
    if missing:
        raise CheckpointError(f"{path} is not a gankit checkpoint (its header lacks {', '.join(missing)})")
    return info


def read_meta(path: str | Path) -> dict[str, Any]:
    """The meta of a checkpoint from its header alone, unverified: enough to choose how to load it (the
    tensors and the checksum are read by :func:`load_checkpoint`)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            head += f.read(n) if n <= _MAX_HEADER else b""
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    return _read_header(head, path)["meta"]


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
    try:  # the layout first: a header that cannot describe its tensors says so, not just "mismatch"
        state = unpack(info["state"], tensors)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
        raise CheckpointError(f"{path} is not a gankit checkpoint (its header does not describe its tensors)"
                              ) from None
    covered = "its tensors" if info.get("version", 0) < 2 else "its tensors and metadata"
    try:
        digest = _digest(tensors, None if info.get("version", 0) < 2 else info)
    except (TypeError, ValueError, RecursionError):
        digest = None
    if digest != info["sha256"]:
        raise CheckpointError(f"{path}: checksum mismatch: {covered} do not match the SHA-256 in its header "
                              "(file damaged or partially written)")
    if str(map_location) != "cpu":
        state = unpack(info["state"], {k: v.to(map_location) for k, v in tensors.items()})
    return state, info["meta"]


# ---------------------------------------------------------------------------------------------
# A run's checkpoint directory


class CheckpointDir:
    """``step_<8-digit step>.safetensors`` files, the newest ``keep`` kept, ``latest.json`` naming the last."""

    def __init__(self, root: str | Path, keep: int = 3) -> None:
        self.root = Path(root)
        self.keep = keep

    def path_for(self, step: int) -> Path:
        return self.root / f"step_{step:08d}.safetensors"

    def all(self) -> list[Path]:
        return sorted(self.root.glob("step_*.safetensors")) if self.root.is_dir() else []

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any]) -> Path:
        """Write the checkpoint, then point latest.json at it, then drop the oldest: a kill between any two
        of these leaves latest.json naming a complete file."""
        pointer = self.root / "latest.json"
        _refuse_nonfinite(self.path_for(step), state)
        with signals_held():
            path = save_checkpoint(self.path_for(step), state, meta)
            try:
                atomic_write_bytes(pointer, json.dumps({"file": path.name, "step": step}).encode())
            except OSError as exc:
                raise CheckpointError(f"cannot write {pointer}: {exc.strerror or exc} (it still names the "
                                      "previous checkpoint)") from None
            for old in self.all()[:-self.keep]:
                old.unlink(missing_ok=True)
        return path

    def save_best(self, state: dict[str, Any], meta: dict[str, Any]) -> Path:
        """``best.safetensors``: outside the keep-last-k rotation, replaced atomically when beaten."""
        _refuse_nonfinite(self.root / "best.safetensors", state)
        return save_checkpoint(self.root / "best.safetensors", state, meta)

    def remove_temporaries(self) -> list[Path]:
        """Delete what killed saves left behind (they are never taken for checkpoints anyway)."""
        return remove_temporaries(self.root)

    def latest(self) -> Path | None:
        """The checkpoint named by latest.json, else the newest file present."""
        pointer = self.root / "latest.json"
        try:
            name = json.loads(pointer.read_text())["file"]
            # only a checkpoint name of this folder: never a path that leads into another run
            if _STEP_NAME.fullmatch(name) and (self.root / name).is_file():
                return self.root / name
        except (OSError, ValueError, KeyError, TypeError):
            pass
        files = self.all()
        return files[-1] if files else None


def _refuse_nonfinite(path: Path, state: dict[str, Any]) -> None:
    # the loop rolls a diverged model back before it saves; this is the last line of defence
    bad = nonfinite_weights(state)
    if bad:
        raise CheckpointError(f"refusing to write {path}: the weights of {', '.join(bad)} hold NaN or Inf "
                              "(the previous checkpoint is untouched)")


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


def state_mismatch(own: dict[str, Any], state: dict[str, Any], optional: str | None = None) -> str | None:
    """What keeps ``state`` from loading into a module whose state dict is ``own`` (None: it fits).
    Keys of ``own`` ending in ``optional`` may be absent from ``state``."""
    missing = sorted(k for k in own if k not in state and not (optional and k.endswith(optional)))
    unexpected = sorted(k for k in state if k not in own)
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if not (missing or unexpected or wrong):
        return None
    return "; ".join(filter(None, [
        f"missing {', '.join(missing[:3])}" if missing else "",
        f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
        f"shape mismatch {', '.join(wrong[:3])}" if wrong else ""]))
