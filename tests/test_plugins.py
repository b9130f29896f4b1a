"""Models from the user's own code reach every command: `--import MODULE` and the 'gankit.plugins' entry point.

Each command runs as a user runs it: a subprocess in a folder outside the checkout."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = '''
import math

import torch.nn as nn

from gankit.models import GENERATORS


@GENERATORS.register("{name}")
class TinyMLP(nn.Module):
    def __init__(self, latent_dim, out_shape, num_classes=None, *, width: int = 64):
        super().__init__()
        self.out_shape = out_shape
        self.net = nn.Sequential(nn.Linear(latent_dim, width), nn.ReLU(), nn.Linear(width, math.prod(out_shape)),
                                 nn.Tanh())

    def forward(self, z, y=None):
        return self.net(z).view(len(z), *self.out_shape)
'''
QUICK = ["--steps", "2", "--set", "data.limit=128", "train.batch_size=16", "log.sample_every=0", "eval.every=0",
         "log.tensorboard=false", "log.progress=false", "model.conditional=false", "model.self_condition=0",
         "train.threads=1"]


def gankit(cwd: Path, *args: str, pythonpath: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (pythonpath, str(ROOT)) if p)}
    return subprocess.run([sys.executable, "-m", "gankit", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_import_makes_a_users_model_trainable_and_samplable_and_its_absence_is_explained(tmp_path):
    (tmp_path / "mymodels.py").write_text(MODELS.format(name="tiny_mlp"))
    out = gankit(tmp_path, "train", "mnist_dcgan", "--import", "mymodels", "--run-dir", "runs/tiny", *QUICK,
                 "model.generator={name: tiny_mlp, width: 16}")
    assert out.returncode == 0, out.stderr
    missing = gankit(tmp_path, "sample", "runs/tiny", "--out", "s.png")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.count("\n") == 1 and "unknown generator 'tiny_mlp'" in missing.stderr
    assert "pass --import MODULE" in missing.stderr and "'gankit.plugins' entry point" in missing.stderr
    found = gankit(tmp_path, "sample", "runs/tiny", "--out", "s.png", "--import", "mymodels")
    assert found.returncode == 0, found.stderr
    assert (tmp_path / "s.png").is_file()
    by_file = gankit(tmp_path, "sample", "runs/tiny", "--out", "t.npz", "--import", str(tmp_path / "mymodels.py"))
    assert by_file.returncode == 0, by_file.stderr


def _plugin_package(site: Path, module: str, target: str) -> None:
    """An installed distribution as importlib.metadata sees it: a .dist-info with entry_points.txt."""
    info = site / "myplug-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[gankit.plugins]\nmyplug = {target}\n")
    (site / f"{module}.py").write_text(MODELS.format(name="plug_mlp"))


def test_an_installed_packages_entry_point_registers_its_models_for_every_command(tmp_path):
    site, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    _plugin_package(site, "myplug_models", "myplug_models")
    out = gankit(work, "train", "mnist_dcgan", "--run-dir", "run", *QUICK, "model.generator={name: plug_mlp, width: 8}",
                 pythonpath=str(site))
    assert out.returncode == 0, out.stderr
    sample = gankit(work, "sample", "run", "--out", "s.npz", pythonpath=str(site))
    assert sample.returncode == 0, sample.stderr
    listed = gankit(work, "config", "--model", "plug_mlp", pythonpath=str(site))
    assert listed.returncode == 0 and "width" in listed.stdout, listed.stderr


@pytest.mark.parametrize("argv, expected", [
    (["--import", "no_such_module_here"],
     "--import no_such_module_here: no module named 'no_such_module_here' here or on PYTHONPATH"),
    (["--import", "missing/file.py"], "--import missing/file.py: no such file"),
    (["--import", "broken"], "--import broken failed: ZeroDivisionError: division by zero"),
])
def test_a_module_that_cannot_be_imported_is_one_line(tmp_path, argv, expected):
    (tmp_path / "broken.py").write_text("1 / 0\n")
    out = gankit(tmp_path, "config", "mnist_dcgan", *argv)
    assert out.returncode == 2 and out.stderr == f"gankit: error: {expected}\n"


def test_a_broken_entry_point_is_named(tmp_path):
    site = tmp_path / "site"
    _plugin_package(site, "myplug_models", "myplug_models:nothing_here")
    out = gankit(tmp_path, "config", "mnist_dcgan", "--set", "model.generator={name: plug_mlp}", pythonpath=str(site))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "gankit: error: plugin 'myplug' (myplug_models:nothing_here, entry point 'gankit.plugins') failed to import" \
        in out.stderr
