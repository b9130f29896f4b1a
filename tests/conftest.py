"""Shared fixtures: tiny configs (so the whole suite runs in well under 3 minutes on 2 CPU cores),
a small trained run reused by the sampling tests, and helpers to compare training states."""
from __future__ import annotations

import copy
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from gankit.config import apply_overrides

# A tiny DCGAN on 256 bundled digits: every switch that touches an RNG stream or the optimizer is on
# (EMA, k = 2 D steps, instance noise, label smoothing, dropout in D), and 256 / 32 = 8 batches per
# epoch with 2 batches per step, so an epoch ends every 4 steps.
TINY: dict[str, Any] = {
    "data": {"name": "mnist10k", "limit": 256},
    "model": {
        "latent_dim": 16,
        "generator": {"name": "dcgan", "width": 8},
        "discriminator": {"name": "mlp", "widths": [32], "dropout": 0.2},
    },
    "objective": {"label_smoothing": 0.1, "instance_noise": 0.1, "instance_noise_steps": 30},
    "train": {"device": "cpu", "threads": 2, "seed": 0, "batch_size": 32, "steps": 10, "d_steps": 2,
              "ema_decay": 0.9},
    "log": {"every": 5, "sample_every": 10, "grid": 2, "progress": False, "tensorboard": False,
            "plot": False},
    "checkpoint": {"every": 10, "keep": 2},
    # float32 where a CPU with native bfloat16 would autocast: the tiny runs are compared bit for bit with
    # references computed in float32 (plain PyTorch, one process against two); tests/test_perf.py covers bf16
    "perf": {"amp": "fp32"},
}

# The 8-Gaussian ring with MLPs of one hidden layer.
TINY_RING: dict[str, Any] = {
    "data": {"name": "ring", "num_points": 512},
    "model": {
        "latent_dim": 4,
        "generator": {"name": "mlp", "widths": [32], "output": "none"},
        "discriminator": {"name": "mlp", "widths": [32]},
        "init": "default",
    },
    "train": {"device": "cpu", "threads": 2, "seed": 0, "batch_size": 64, "steps": 10},
    "log": {"every": 5, "sample_every": 0, "progress": False, "tensorboard": False, "plot": False},
    "checkpoint": {"every": 100},
    "perf": {"amp": "fp32"},  # as TINY's
}

TINY_YAML = """\
data: {name: mnist10k, limit: 256}
model:
  latent_dim: 16
  generator: {name: dcgan, width: 8}
  discriminator: {name: mlp, widths: [32], dropout: 0.2}
objective: {label_smoothing: 0.1}
train: {device: cpu, threads: 2, seed: 0, batch_size: 32, steps: 4, d_steps: 2, ema_decay: 0.9}
log: {every: 2, sample_every: 0, grid: 2, progress: false, tensorboard: false, plot: false}
checkpoint: {every: 100, keep: 2}
perf: {amp: fp32}
"""


# The shared trained run: ~30 steps, a checkpoint and a sample grid half-way and at the end.
SHARED = ["train.steps=30", "checkpoint.every=15", "log.sample_every=15", "log.plot=true"]


def make_cfg(base: dict[str, Any], *overrides: str) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted ``key=value`` overrides applied."""
    return apply_overrides(copy.deepcopy(base), list(overrides))


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """`gankit train` installs SIGINT/SIGTERM handlers; never leave them in the test process."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="session", autouse=True)
def _isolated_gankit_cache(tmp_path_factory: pytest.TempPathFactory):
    """Evaluation caches (reference features, Inception weights) go to a temporary directory, never to
    the user's ~/.cache/gankit."""
    saved = os.environ.get("GANKIT_CACHE")
    os.environ["GANKIT_CACHE"] = str(tmp_path_factory.mktemp("gankit-cache"))
    yield
    if saved is None:
        os.environ.pop("GANKIT_CACHE", None)
    else:
        os.environ["GANKIT_CACHE"] = saved


@pytest.fixture
def tiny_cfg() -> dict[str, Any]:
    return copy.deepcopy(TINY)


@pytest.fixture
def ring_cfg() -> dict[str, Any]:
    return copy.deepcopy(TINY_RING)


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_YAML)
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory):
    """One tiny DCGAN run (EMA on) shared by the read-only tests of train, sampling and cli."""
    from gankit.train import train

    run_dir = tmp_path_factory.mktemp("shared") / "run"
    result = train(make_cfg(TINY, *SHARED), run_dir)
    return result


def assert_states_equal(a: Any, b: Any, path: str = "state") -> None:
    """Exact equality of nested states (tensors with torch.equal; tuples and lists alike)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), path
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {set(a) ^ set(b)}"
        for k in a:
            assert_states_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_states_equal(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def png_claiming(width: int, height: int) -> bytes:
    """A small real PNG whose header is rewritten to claim ``width`` x ``height`` pixels."""
    import io
    import struct
    import zlib

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buf, "PNG")
    raw = bytearray(buf.getvalue())
    raw[16:24] = struct.pack(">II", width, height)  # after the signature, the IHDR length and its type
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    return bytes(raw)


_RUNS: dict[int, tuple[Any, Any]] = {}


def run_of(game: Any, total: int | None = None) -> Any:
    """The run state a test keeps for ``game`` (the loop owns one per run; tests step games by hand)."""
    from gankit.run_state import RunState

    kept = _RUNS.get(id(game))
    if kept is None or kept[0] is not game:
        kept = _RUNS[id(game)] = (game, RunState(total=total, noise_horizon=total))
    return kept[1]


def step_game(game: Any, total: int | None = None) -> dict[str, Any]:
    """One training step of ``game``, as the loop runs it."""
    from gankit.games.phases import train_step

    return train_step(game, run_of(game, total))
