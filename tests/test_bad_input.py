"""Bad input through the CLI: every case exits 2 with one `gankit: error:` line that names the problem, and
writes nothing (no run directory, no output file, the inputs untouched).

The table runs in-process through ``gankit.cli.main``; two cases also run as real processes, where a
traceback would show.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_YAML
from gankit.checkpoint import CheckpointDir, save_checkpoint
from gankit.cli import main
from gankit.train import train

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["train", "{w}/tiny.yaml", "--run-dir", "{o}/run"]
SAMPLE = ["--out", "{o}/x.png"]
EVAL = ["--ref", "mnist10k", "--num", "10", "--json", "{o}/eval.json"]

# (id, argv, substrings the error line must contain); {w}: the prepared inputs, {o}: an empty directory
CASES = [
    # config keys, types and ranges
    ("unknown-top-level-key", ["train", "{w}/top.yaml", "--run-dir", "{o}/run"],
     ["unknown key 'trian'", "did you mean 'train'"]),
    ("unknown-nested-key", TRAIN + ["--set", "optim.lr_gg=1e-4"], ["'optim.lr_gg'", "did you mean 'optim.lr_g'"]),
    ("unknown-model-argument", TRAIN + ["--set", "model.generator.widht=4"],
     ["'model.generator.widht'", "did you mean 'model.generator.width'"]),
    ("wrong-type", TRAIN + ["--set", "train.batch_size=abc"], ["train.batch_size must be int", "'abc'"]),
    ("negative-lr", TRAIN + ["--set", "optim.lr_d=-0.1"], ["optim.lr_d must be > 0"]),
    ("infinite-lr", TRAIN + ["--set", "optim.lr_g=.inf"], ["optim.lr_g must be a finite number"]),
    ("zero-batch-size", TRAIN + ["--set", "train.batch_size=0"], ["train.batch_size must be >= 1"]),
    ("batch-larger-than-data", TRAIN + ["--set", "train.batch_size=512"],
     ["train.batch_size", "256 samples, fewer than one batch of 512"]),
    ("unknown-device", TRAIN + ["--set", "train.device=tpu"], ["train.device", "'tpu'"]),
    ("unknown-model", TRAIN + ["--set", "model.generator.name=dcgann"],
     ["model.generator.name", "unknown generator 'dcgann'", "did you mean 'dcgan'"]),
    ("zero-width", TRAIN + ["--set", "model.generator.width=0"], ["model.generator (dcgan)", "no weights"]),
    ("negative-width", TRAIN + ["--set", "model.generator.width=-2"], ["model.generator (dcgan)", "negative"]),
    ("unknown-dataset", TRAIN + ["--set", "data.name=mnsit"], ["data.name", "unknown dataset 'mnsit'"]),
    ("unknown-objective", TRAIN + ["--set", "objective.name=wgann"],
     ["objective.name", "unknown objective 'wgann'"]),
    ("impossible-resolution", TRAIN + ["--set", "data.resolution=11"], ["model.generator (dcgan)", "resolution 11"]),
    ("points-for-a-conv-model", TRAIN + ["--set", "data.name=ring"], ["model.generator (dcgan)", "(2,)"]),
    ("two-channels", TRAIN + ["--set", "data.channels=2"], ["data.channels must be 1 or 3, got 2"]),
    # data files
    ("torchvision-files-missing-offline", TRAIN + ["--set", "data.name=cifar10", "data.root={w}/empty"],
     ["cifar10: dataset files not found", "{w}/empty", "data.download"]),
    ("empty-image-folder", TRAIN + ["--set", "data.name=folder", "data.root={w}/empty"],
     ["no images", "{w}/empty"]),
    ("corrupt-image-in-folder", TRAIN + ["--set", "data.name=folder", "data.root={w}/corrupt", "data.resolution=28"],
     ["cannot read image {w}/corrupt/bad.png"]),
    # resuming
    ("resume-with-another-model", ["train", "{w}/tiny.yaml", "--run-dir", "{w}/run", "--resume",
                                   "--set", "model.generator.width=16"],
     ["cannot resume {w}/run/checkpoints/step_00000001.safetensors", "model.generator"]),
    ("resume-with-other-channels", ["train", "{w}/tiny.yaml", "--run-dir", "{w}/run", "--resume",
                                    "--set", "data.channels=3"], ["cannot resume", "data.channels"]),
    ("resume-a-damaged-checkpoint", ["train", "{w}/tiny.yaml", "--run-dir", "{w}/damaged", "--resume"],
     ["{w}/damaged/checkpoints/step_00000001.safetensors", "checksum mismatch"]),
    ("existing-run-without-resume", ["train", "{w}/tiny.yaml", "--run-dir", "{w}/run"],
     ["already holds checkpoints", "--resume"]),
    ("run-dir-is-a-file", ["train", "{w}/tiny.yaml", "--run-dir", "{w}/a_file"], ["{w}/a_file is a file"]),
    # files given to `gankit sample`
    ("sample-corrupt-checkpoint", ["sample", "{w}/corrupt.safetensors"] + SAMPLE,
     ["corrupt.safetensors: checksum mismatch", "file damaged or partially written"]),
    ("sample-truncated-checkpoint", ["sample", "{w}/truncated.safetensors"] + SAMPLE, ["damaged", "truncated"]),
    ("sample-zero-byte-file", ["sample", "{w}/zero.safetensors"] + SAMPLE, ["zero.safetensors is empty"]),
    ("sample-pickle", ["sample", "{w}/model.pt"] + SAMPLE, ["model.pt looks like a pickle", "never unpickles"]),
    ("sample-foreign-safetensors", ["sample", "{w}/foreign.safetensors"] + SAMPLE, ["without gankit metadata"]),
    ("sample-no-checkpoint-in-dir", ["sample", "{w}/empty"] + SAMPLE, ["no checkpoint found in {w}/empty"]),
    # config files and overrides
    ("yaml-syntax-error", ["train", "{w}/syntax.yaml", "--run-dir", "{o}/run"],
     ["syntax.yaml is not valid YAML", "line 2"]),
    ("yaml-not-a-mapping", ["train", "{w}/list.yaml", "--run-dir", "{o}/run"], ["must hold a mapping", "list"]),
    ("yaml-binary", ["train", "{w}/model.pt", "--run-dir", "{o}/run"], ["cannot read {w}/model.pt"]),
    ("config-file-missing", ["train", "{w}/nope.yaml", "--run-dir", "{o}/run"], ["file not found: {w}/nope.yaml"]),
    ("set-without-value", TRAIN + ["--set", "optim.lr_g"], ["'optim.lr_g' must look like section.key=value"]),
    ("set-bad-key", TRAIN + ["--set", "trian.steps=3"], ["unknown key 'trian'", "did you mean 'train'"]),
    ("set-unparsable-value", TRAIN + ["--set", "optim.betas_g=[0.5"], ["cannot parse the value", "optim.betas_g"]),
    # evaluation
    ("eval-unknown-metric", ["eval", "{w}/images.npz", "--metrics", "fidd"] + EVAL,
     ["unknown metric 'fidd'", "did you mean 'fid'"]),
    ("eval-unknown-reference", ["eval", "{w}/images.npz", "--ref", "mnsit", "--metrics", "fid"],
     ["unknown dataset 'mnsit'"]),
    ("eval-two-channel-images", ["eval", "{w}/two_channels.npz", "--metrics", "fid"] + EVAL,
     ["two_channels.npz", "1 (grayscale) or 3 (RGB) channels, got 2"]),
]
SUBPROCESS_CASES = ["yaml-syntax-error", "sample-pickle"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every broken input of the table, prepared once; the cases must leave it exactly as it is."""
    w = tmp_path_factory.mktemp("inputs")
    (w / "tiny.yaml").write_text(TINY_YAML)
    (w / "top.yaml").write_text(TINY_YAML + "trian: {steps: 3}\n")
    (w / "syntax.yaml").write_text("data: {name: mnist10k\nmodel: {}\n")
    (w / "list.yaml").write_text("- data\n- model\n")
    (w / "empty").mkdir()
    (w / "corrupt").mkdir()
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(w / "corrupt" / f"{i}.png")
    (w / "corrupt" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    torch.save({"w": torch.ones(2)}, w / "model.pt")
    (w / "zero.safetensors").write_bytes(b"")
    (w / "a_file").write_text("not a directory")
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(w / "foreign.safetensors"))
    good = save_checkpoint(w / "good.safetensors", {"w": torch.randn(64)}, {"step": 1})
    raw = good.read_bytes()
    (w / "truncated.safetensors").write_bytes(raw[:-40])
    (w / "corrupt.safetensors").write_bytes(_flip_tensor_byte(raw))
    np.savez(w / "images.npz", images=np.zeros((10, 28, 28, 1), np.uint8))
    np.savez(w / "two_channels.npz", images=np.zeros((10, 28, 28, 2), np.uint8))
    assert main(["train", str(w / "tiny.yaml"), "--run-dir", str(w / "run"), "--steps", "1"]) == 0
    shutil.copytree(w / "run", w / "damaged")
    latest = CheckpointDir(w / "damaged" / "checkpoints").latest()
    latest.write_bytes(_flip_tensor_byte(latest.read_bytes()))
    return w


def _flip_tensor_byte(raw: bytes) -> bytes:
    (n,) = struct.unpack("<Q", raw[:8])
    out = bytearray(raw)
    out[8 + n + 5] ^= 0x10
    return bytes(out)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def _fill(argv: list[str], w: Path, o: Path) -> list[str]:
    return [a.format(w=w, o=o) for a in argv]



@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_writes_nothing(world, tmp_path, monkeypatch, capsys,
                                                        argv, expected):
    monkeypatch.chdir(tmp_path)  # a default runs/<name> would appear here
    before = _snapshot(world)
    assert main(_fill(argv, world, tmp_path)) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gankit: error: "), err
    for part in expected:
        assert part.format(w=world) in lines[0]
    assert out == ""
    assert list(tmp_path.iterdir()) == [] and _snapshot(world) == before


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_input_in_a_real_process(world, tmp_path, case):
    _, argv, expected = next(c for c in CASES if c[0] == case)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    before = _snapshot(world)
    proc = subprocess.run([sys.executable, "-m", "gankit", *_fill(argv, world, tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gankit: error: "), proc.stderr
    assert all(part.format(w=world) in lines[0] for part in expected)
    assert list(tmp_path.iterdir()) == [] and _snapshot(world) == before
