"""One training process per run directory: an advisory lock on the directory itself.

``flock`` on an open descriptor of the run directory: the kernel drops it when the process ends however
it ends (SIGKILL, a crash, a power loss leaves nothing on disk), so a dead run can never leave the
directory locked, and locking writes no file (a refused run leaves the directory exactly as it was).
Where ``fcntl`` is missing (Windows) the lock is a no-op.
"""
from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]


class RunDirBusy(RuntimeError):
    """Another process holds the run directory."""


class RunLock:
    """An exclusive, non-blocking lock on ``run_dir``; ``release`` (or the process's end) frees it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        if fcntl is None or self._fd is not None:
            return self
        fd = os.open(self.run_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirBusy(f"the run directory {self.run_dir} is in use by another gankit process (one "
                             "training process per run directory); wait until it ends, or choose another "
                             "--run-dir") from None
        except OSError:
            os.close(fd)  # a filesystem without flock: run unlocked rather than not at all
            return self
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
