"""The engine's behaviour, pinned before the redesign of issue 29: every game trains 30 steps from fixed
seeds and must log the same losses and end at the same weights as when this file was recorded (the hash of
the weights where the machine is the one that recorded them, their sums anywhere).

A change that alters training on purpose re-records it (and says so in its commit):

    GANKIT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import TINY, TINY_RING, make_cfg
from gankit.checkpoint import load_checkpoint
from gankit.logs import read_metrics
from gankit.train import train
from test_translation import CYCLE, P2P

GOLDEN = Path(__file__).parent / "golden" / "engine.json"
STEPS = 30
# one thread, float32: the figures do not depend on the thread count or on the CPU's bfloat16
PINNED = [f"train.steps={STEPS}", "train.threads=1", "perf.amp=fp32", "log.every=1", "checkpoint.every=100",
          "log.sample_every=0"]
GAMES: dict[str, dict[str, Any]] = {
    "gan": make_cfg(TINY, "model.discriminator={name: dcgan, width: 8}", "objective.name=rpgan",
                    "objective.r1_gamma=0.2", "objective.r2_gamma=0.2", "objective.r1_every=2"),
    "gan_conditional": make_cfg(TINY, "model.conditional=true", "model.discriminator={name: dcgan, width: 8}"),
    # an unlabelled folder (written by the test): G and D condition on clusters of D's features
    "gan_self_conditioned": make_cfg(TINY, "model.conditional=auto", "model.self_condition=4",
                                     "model.recluster_every=3", "data.name=folder", "data.limit=null",
                                     "data.resolution=28", "data.channels=1"),
    "ring": TINY_RING,
    "pix2pix": P2P,
    "cyclegan": CYCLE,
}


def _digit_folder(folder: Path, count: int = 96) -> Path:
    """The first ``count`` bundled digits as PNG files, without their labels."""
    from PIL import Image

    from gankit.data.bundled import load_mnist10k_arrays

    images, _ = load_mnist10k_arrays()
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(images[i * 97 % len(images)]).save(folder / f"{i:03d}.png")  # spread over the classes
    return folder


def machine() -> str:
    """The CPU (model, and a digest of its instruction-set flags, which choose the kernels) and torch version:
    a float32 run on one thread is bit-reproducible only on the same."""
    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    field = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in info if ":" in line}
    flags = hashlib.sha256(field.get("flags", "").encode()).hexdigest()[:12]
    return f"{field.get('model name', platform.processor())} (flags {flags}) / torch {torch.__version__}"


def weights_hash(state: dict[str, Any]) -> str:
    """SHA-256 of every network's tensors (the optimizers' too), in key order: bit-exact or not."""
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        if isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
            for name in sorted(value):
                digest.update(f"{key}.{name}".encode())
                digest.update(value[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def fingerprint(run_dir: Path, checkpoint: Path) -> dict[str, Any]:
    """Every loss of every logged step ("step:name"), per network the sums of |w| and of w at the end, and
    the hash of the final weights with the machine it was taken on."""
    rows = read_metrics(run_dir / "metrics.jsonl")
    state, meta = load_checkpoint(checkpoint)
    nets = {}
    for key, value in state.items():
        if isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()) \
                and not key.startswith("opt"):
            tensors = [v.double() for v in value.values() if v.is_floating_point()]
            nets[key] = [float(sum(t.abs().sum() for t in tensors)), float(sum(t.sum() for t in tensors))]
    losses = {f"{r['step']}:{k}": v for r in rows for k, v in r.items() if k.startswith("loss")}
    return {"step": meta["step"], "losses": losses, "weights": nets, "hash": weights_hash(state),
            "machine": machine()}


@pytest.mark.parametrize("game", list(GAMES))
def test_every_game_trains_as_it_did_when_pinned(game, tmp_path):
    cfg = make_cfg(GAMES[game], *PINNED)
    if cfg["data"].get("name") == "folder":
        cfg = make_cfg(cfg, f"data.root={_digit_folder(tmp_path / 'digits')}")
    result = train(cfg, tmp_path / "run")
    found = fingerprint(result.run_dir, result.checkpoint)
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    if os.environ.get("GANKIT_UPDATE_GOLDEN"):
        golden[game] = found
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    assert game in golden, f"no golden figures for {game}: record them with GANKIT_UPDATE_GOLDEN=1"
    expected = golden[game]
    assert found["step"] == expected["step"] == STEPS
    assert found["losses"].keys() == expected["losses"].keys() and len(found["losses"]) >= STEPS
    assert found["losses"] == pytest.approx(expected["losses"], rel=1e-4, abs=1e-6)
    assert found["weights"].keys() == expected["weights"].keys()
    for net, sums in expected["weights"].items():
        assert found["weights"][net] == pytest.approx(sums, rel=1e-4, abs=1e-5), net
    if found["machine"] == expected["machine"]:  # elsewhere other kernels round differently: the sums decide
        assert found["hash"] == expected["hash"], "same losses, but the final weights are not bit-identical"


OLD_RUNS = Path(__file__).parent / "golden" / "runs"  # checkpoints written by the engine before issue 29
HALF = 4


def _old_run(game: str) -> dict[str, Any]:
    return make_cfg(GAMES[game], *PINNED, f"train.steps={2 * HALF}", f"checkpoint.every={HALF}")


@pytest.mark.parametrize("game", ["gan", "gan_self_conditioned", "pix2pix", "cyclegan"])
def test_checkpoints_of_the_engine_before_the_redesign_resume(game, tmp_path):
    """A run directory whose step-4 checkpoint the old engine wrote resumes to step 8 exactly as the old engine
    continued it (its losses at steps 5-8 and the final weights' sums)."""
    import shutil

    cfg = _old_run(game)
    if cfg["data"].get("name") == "folder":
        cfg = make_cfg(cfg, f"data.root={_digit_folder(tmp_path / 'digits')}")
    fixture = OLD_RUNS / game
    if os.environ.get("GANKIT_UPDATE_GOLDEN"):
        result = train(cfg, tmp_path / "full")
        shutil.rmtree(fixture, ignore_errors=True)
        (fixture / "checkpoints").mkdir(parents=True)
        first = sorted((result.run_dir / "checkpoints").glob("*.safetensors"))[0]
        shutil.copy(first, fixture / "checkpoints" / first.name)
        found = fingerprint(result.run_dir, result.checkpoint)
        found["losses"] = {k: v for k, v in found["losses"].items() if int(k.split(":")[0]) > HALF}
        (fixture / "expected.json").write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        return
    run = tmp_path / "run"
    shutil.copytree(fixture, run, ignore=shutil.ignore_patterns("expected.json"))
    result = train(cfg, run, resume=True)
    found = fingerprint(result.run_dir, result.checkpoint)
    expected = json.loads((fixture / "expected.json").read_text())
    assert found["step"] == expected["step"] == 2 * HALF
    assert found["losses"] == pytest.approx(expected["losses"], rel=1e-4, abs=1e-6)
    for net, sums in expected["weights"].items():
        assert found["weights"][net] == pytest.approx(sums, rel=1e-4, abs=1e-5), net
