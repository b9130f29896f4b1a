"""Training-health alarms and divergence rollback, on tiny runs built to fail."""
from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import TINY, make_cfg
from gankit.checkpoint import load_checkpoint
from gankit.config import HealthConfig
from gankit.health import HealthMonitor, nearest_neighbour_spread
from gankit.games.noise_to_image import NoiseToImage as Trainer
from gankit.train import TrainError, train

LOOP = importlib.import_module("gankit.train")  # the module (gankit.train is also the function)


def events(run_dir) -> list[dict]:
    path = run_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_alarm_fires_after_patience_once_and_rearms():
    mon = HealthMonitor(HealthConfig(patience=3))
    fired = [mon.observe(s, d_fake=0.001) for s in range(1, 6)]
    assert [len(f) for f in fired] == [0, 0, 1, 0, 0]
    assert fired[2][0].kind == "d_wins" and "Try:" in fired[2][0].text()
    assert mon.observe(6, d_fake=0.4) == []  # recovered: re-armed
    assert [len(mon.observe(s, d_fake=0.0)) for s in range(7, 10)] == [0, 0, 1]


def test_collapse_and_coverage_alarms():
    mon = HealthMonitor(HealthConfig(patience=2))
    assert mon.observe(1, diversity=0.9) == []
    assert mon.observe(2, diversity=0.01) == []
    [alarm] = mon.observe(3, diversity=0.01)
    assert alarm.kind == "collapse" and "0.010" in alarm.message
    assert mon.observe(4, coverage=0.3) == []
    [alarm] = mon.observe(5, coverage=0.3)
    assert alarm.kind == "coverage" and "30%" in alarm.message


def test_alarms_can_be_switched_off():
    mon = HealthMonitor(HealthConfig(alarms=False, patience=1))
    assert mon.observe(1, d_fake=0.0, diversity=0.0, coverage=0.0) == []


def test_healthy_tiny_run_raises_no_alarm(tmp_path):
    train(make_cfg(TINY, "train.steps=20"), tmp_path / "run")
    assert events(tmp_path / "run") == []


def test_collapsed_generator_raises_the_collapse_alarm(tmp_path, monkeypatch):
    """A G whose weights never move from an all-zero output layer produces one image: collapse."""
    original = LOOP.train_step

    def frozen_g_step(game, run):
        stats = original(game, run)
        with torch.no_grad():
            for p in game.g.parameters():
                p.mul_(0.0)  # every sample identical
        return stats

    monkeypatch.setattr(LOOP, "train_step", frozen_g_step)
    train(make_cfg(TINY, "train.steps=20", "log.every=2", "health.patience=3"), tmp_path / "run")
    kinds = [e["alarm"] for e in events(tmp_path / "run")]
    assert "collapse" in kinds


def _nan_at(steps: set[int], times: int = 1_000_000):
    """Patch train_step to report a NaN loss at the given step numbers, at most ``times`` times."""
    original = LOOP.train_step
    left = [times]

    def step(game, run):
        stats = original(game, run)
        if run.step in steps and left[0] > 0:
            left[0] -= 1
            stats["loss_d"] = torch.tensor(math.nan)
        return stats

    return step


def test_non_finite_loss_rolls_back_with_lower_learning_rates(tmp_path, monkeypatch):
    monkeypatch.setattr(LOOP, "train_step", _nan_at({13}, times=1))
    cfg = make_cfg(TINY, "train.steps=20", "checkpoint.every=10", "log.every=5")
    result = train(cfg, tmp_path / "run")
    assert result.step == 20
    [event] = events(tmp_path / "run")
    assert event["alarm"] == "diverged" and "step 10" in event["message"]
    state, meta = load_checkpoint(result.checkpoint)
    assert meta["rollbacks"] == 1 and meta["lr_scale"] == 0.5
    assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.5)  # TINY keeps the default lr
    assert all(torch.isfinite(t).all() for t in state["g"].values())


def test_rollback_before_the_first_checkpoint_returns_to_the_start(tmp_path, monkeypatch):
    monkeypatch.setattr(LOOP, "train_step", _nan_at({3}, times=1))
    result = train(make_cfg(TINY, "train.steps=10", "checkpoint.every=100", "log.every=5"), tmp_path / "run")
    assert result.step == 10
    assert "step 0" in events(tmp_path / "run")[0]["message"]


def test_persistent_divergence_stops_with_a_report_and_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(LOOP, "train_step", _nan_at(set(range(11, 1000))))
    cfg = make_cfg(TINY, "train.steps=40", "checkpoint.every=10", "log.every=5", "health.rollbacks=2")
    with pytest.raises(TrainError, match="diverged .* after 2 rollbacks"):
        train(cfg, tmp_path / "run")
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("step_*.safetensors"))
    assert [p.name for p in ckpts] == ["step_00000010.safetensors"]
    state, _ = load_checkpoint(ckpts[-1])
    assert all(torch.isfinite(t).all() for t in state["g"].values())
    assert [e["alarm"] for e in events(tmp_path / "run")] == ["diverged", "diverged"]


def test_a_generator_of_two_distinct_digits_raises_the_collapse_alarm():
    """Issue 16: the per-pixel std of two different digits is high, so it alone missed this collapse
    (a StyleGAN run at FID 1329 drawing 2 classes); the nearest-neighbour spread is ~0 and fires."""
    from gankit.data.bundled import load_mnist10k_arrays
    from gankit.train import prepare

    from gankit.config import from_dict

    trainer = prepare(from_dict(make_cfg(TINY, "train.steps=1")))
    images = torch.from_numpy(load_mnist10k_arrays()[0][:256]).float().div(127.5).sub(1).view(256, 1, 28, 28)
    real = images[torch.randperm(256, generator=torch.Generator().manual_seed(0))[:32]]
    trainer.real_std = float(real.flatten(1).std(0).mean())
    trainer.real_spread = (32, nearest_neighbour_spread(real))

    far = int((images - images[0]).abs().flatten(1).mean(1).argmax())  # two very different digits

    class TwoDigits(torch.nn.Module):
        def forward(self, z, y=None):
            return torch.where((z[:, :1] > 0).view(-1, 1, 1, 1), images[0], images[far])

    class RealImages(torch.nn.Module):  # a healthy G: distinct real digits
        def forward(self, z, y=None):
            return images[(z[:, 0].abs() * 1000).long() % 256]

    z = torch.randn(128, 16, generator=torch.Generator().manual_seed(1))
    collapsed = TwoDigits()
    std_only = float(collapsed(z).flatten(1).std(0).mean()) / trainer.real_std
    assert std_only > HealthConfig().diversity_below  # what the alarm used to read: quiet
    trainer.nets["g"] = collapsed
    assert trainer.diversity(z) < 0.05
    mon = HealthMonitor(HealthConfig(patience=2))
    assert [a.kind for s in (1, 2) for a in mon.observe(s, diversity=trainer.diversity(z))] == ["collapse"]
    trainer.nets["g"] = RealImages()
    assert trainer.diversity(z) > 0.5


def test_nan_weights_with_finite_losses_are_never_checkpointed(tmp_path):
    """Issue 16, defect 1: lr 1e6 breaks the weights in the update after the losses were computed; no
    checkpoint may hold them, and the final error names no NaN checkpoint as good."""
    from gankit.checkpoint import CheckpointDir, nonfinite_weights

    from gankit.config import read_yaml

    ring = read_yaml(Path(__file__).resolve().parents[1] / "configs" / "ring.yaml")  # the campaign's command
    cfg = make_cfg(ring, "train.steps=200", "optim.lr_g=1e6", "optim.lr_d=1e6", "checkpoint.every=3",
                   "log.progress=false", "log.tensorboard=false", "log.plot=false", "train.threads=1")
    with pytest.raises(TrainError, match="non-finite loss or weights"):
        train(cfg, tmp_path / "run")
    for path in CheckpointDir(tmp_path / "run" / "checkpoints").all():
        assert nonfinite_weights(load_checkpoint(path)[0]) == []
