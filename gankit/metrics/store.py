"""Files the metrics read and write: gankit's cache directory, safetensors headers, content digests."""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from gankit.metrics.errors import EvalError

_MAX_HEADER = 100 * 1024 * 1024


def cache_root() -> Path:
    """``$GANKIT_CACHE`` or ``~/.cache/gankit``: Inception weights and the reference feature cache."""
    env = os.environ.get("GANKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gankit"


def digest(raw: bytes) -> str:
    """Short content hash: enough to tell weight files apart in cache keys."""
    return hashlib.sha256(raw).hexdigest()[:12]


def safetensors_metadata(raw: bytes, where: str) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file held in memory; anything else raises EvalError."""
    # a safetensors header length can begin with byte 0x80 too; its JSON header then starts at byte 8
    if (raw[:1] == b"\x80" or raw[:2] == b"PK") and raw[8:9] != b"{":
        raise EvalError(f"{where} looks like a pickle / torch.save file; gankit reads weights only from "
                        "safetensors files here")
    if len(raw) < 8:
        raise EvalError(f"{where} is not a safetensors file (only {len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > min(_MAX_HEADER, len(raw) - 8):
        raise EvalError(f"{where} is not a safetensors file (no valid header)")
    try:
        meta = json.loads(raw[8:8 + n]).get("__metadata__") or {}
        return {str(k): str(v) for k, v in meta.items()}  # a list or a string there: AttributeError too
    except (ValueError, AttributeError):
        raise EvalError(f"{where} is not a safetensors file (unreadable header)") from None
