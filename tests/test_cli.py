"""gankit.cli: the command line end to end, in-process through ``main`` and once as a real process."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_YAML, assert_states_equal
from gankit.checkpoint import CheckpointDir, load_checkpoint
from gankit.cli import StopFlag, main

REPO = Path(__file__).resolve().parents[1]


def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gankit: error: "), err
    return lines[0]


def _corrupt_tensor_byte(path: Path) -> None:
    import struct

    raw = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", bytes(raw[:8]))
    raw[8 + n + 100] ^= 0x55
    path.write_bytes(bytes(raw))


def test_train_sample_resume_bit_exact_then_corrupt(tmp_path, tiny_yaml, capsys):
    run, straight = tmp_path / "run", tmp_path / "straight"
    assert main(["train", str(tiny_yaml), "--run-dir", str(run), "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "reached its step target at step 2" in out and "step_00000002.safetensors" in out

    assert main(["sample", str(run), "--num", "4", "--out", str(tmp_path / "grid.png")]) == 0
    assert "wrote 4 samples of the EMA generator at step 2" in capsys.readouterr().out
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert main(["sample", str(run), "--num", "3", "--out", str(tmp_path / "s.npz"), "--seed", "5",
                 "--no-ema", "--batch-size", "2"]) == 0
    assert "of the generator at step 2" in capsys.readouterr().out
    with np.load(tmp_path / "s.npz") as npz:
        assert npz["images"].shape == (3, 28, 28, 1) and npz["images"].dtype == np.uint8

    assert main(["train", str(tiny_yaml), "--run-dir", str(run), "--steps", "4", "--resume"]) == 0
    assert "at step 4" in capsys.readouterr().out
    assert main(["train", str(tiny_yaml), "--run-dir", str(straight), "--steps", "4"]) == 0
    capsys.readouterr()
    resumed, _ = load_checkpoint(CheckpointDir(run / "checkpoints").latest())
    direct, _ = load_checkpoint(CheckpointDir(straight / "checkpoints").latest())
    for key in ("g", "d", "g_ema", "opt_g", "opt_d", "rng"):
        assert_states_equal(resumed[key], direct[key], key)

    _corrupt_tensor_byte(CheckpointDir(run / "checkpoints").latest())
    assert main(["sample", str(run), "--num", "2", "--out", str(tmp_path / "bad.png")]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "damaged" in line and "checksum" in line
    assert not (tmp_path / "bad.png").exists()


def test_train_into_existing_run_without_resume(tmp_path, tiny_yaml, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_yaml), "--run-dir", str(run), "--steps", "1"]) == 0
    capsys.readouterr()
    assert main(["train", str(tiny_yaml), "--run-dir", str(run), "--steps", "2"]) == 2
    assert "--resume" in _error_line(capsys.readouterr().err)
    assert main(["train", str(tiny_yaml), "--run-dir", str(run), "--steps", "2", "--resume",
                 "--set", "optim.lr_d=1e-3"]) == 2
    assert "optim.lr_d" in _error_line(capsys.readouterr().err)


def test_steps_flag_overrides_epochs_in_the_yaml(tmp_path, capsys):
    cfg = tmp_path / "epochs.yaml"
    cfg.write_text(TINY_YAML.replace("steps: 4", "epochs: 100"))
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--steps", "1",
                 "--set", "train.ema_decay=0"]) == 0
    assert "at step 1" in capsys.readouterr().out
    _, meta = load_checkpoint(CheckpointDir(tmp_path / "run" / "checkpoints").latest())
    assert meta["config"]["train"]["epochs"] is None and meta["config"]["train"]["steps"] == 1
    assert meta["config"]["train"]["ema_decay"] == 0.0


def test_max_seconds_prints_how_to_continue(tmp_path, tiny_yaml, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_yaml), "--run-dir", str(run), "--max-seconds", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "used its time budget" in out
    assert f"--run-dir {run} --resume" in out


@pytest.mark.parametrize("extra, lifted", [
    ([], True),  # --max-seconds alone: the budget is the run's length
    (["--steps", "3"], False),  # the user's own step target stands
    (["--set", "train.steps=3"], False),
    (["--set", "optim.schedule=linear"], False),  # a decay counts down to train.steps: it keeps them
    (["--set", "objective.gamma_final=0.1"], False),
    (["--set", "train.ema_decay=0.9", "train.ema_decay_final=0.99"], False),
])
def test_a_time_budget_alone_is_not_cut_short_by_the_configs_step_target(tmp_path, tiny_yaml, capsys, monkeypatch,
                                                                         extra, lifted):
    seen = {}

    def fake_train(cfg, run_dir, resume=False, stop=None):
        seen["steps"], seen["max_seconds"] = cfg.train.steps, cfg.train.max_seconds
        raise KeyboardInterrupt  # nothing trains: only the resolved config matters here

    monkeypatch.setattr(sys.modules["gankit.train"], "train", fake_train)
    main(["train", str(tiny_yaml), "--run-dir", str(tmp_path / "run"), "--max-seconds", "30", *extra])
    out = capsys.readouterr().out
    assert seen["max_seconds"] == 30.0
    assert (seen["steps"] is None) == lifted
    assert ("training for the whole budget (the config's train.steps 4 does not stop it)" in out) == lifted


@pytest.mark.parametrize("given, repeated", [
    (["mnist_dcgan"], "gankit train mnist_dcgan --run-dir R --resume"),
    (["seeds/seed004_dcgan_mnist"], "gankit train seeds/seed004_dcgan_mnist --run-dir R --resume"),
    (["--data", "D"], "gankit train --run-dir R --resume --data D"),
])
def test_the_resume_command_repeats_the_config_as_the_user_typed_it(tmp_path, capsys, monkeypatch, given, repeated):
    """A preset name stays a name, not the path of the file inside the installed package."""
    from types import SimpleNamespace

    from PIL import Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "D").mkdir()
    Image.new("L", (28, 28)).save(tmp_path / "D" / "a.png")
    done = SimpleNamespace(stopped_by="max_seconds", step=1, checkpoint="c", run_dir="R")
    monkeypatch.setattr(sys.modules["gankit.train"], "train", lambda *a, **k: done)
    assert main(["train", *given, "--run-dir", "R", "--steps", "1"]) == 0
    assert f"continue with: {repeated} --steps 1\n" in capsys.readouterr().out


@pytest.mark.parametrize("args, expected", [
    (["--set", "optim.lr_gg=1e-4"], "did you mean 'optim.lr_g'"),
    (["--set", "model.generator.widht=4"], "did you mean 'model.generator.width'"),
    (["--set", "optim.lr_g=-1"], "optim.lr_g must be > 0"),
    (["--set", "data.name=folder", "data.root=/nonexistent/images"], "not a directory"),
])
def test_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path, tiny_yaml, capsys, monkeypatch,
                                                             args, expected):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["train", str(tiny_yaml), *args]) == 2  # default run dir: runs/<name>-<time>
    assert expected in _error_line(capsys.readouterr().err)
    assert main(["train", str(tiny_yaml), "--run-dir", str(tmp_path / "run"), *args]) == 2
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no runs/, no run/


def test_unknown_key_in_the_yaml_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_YAML.replace("batch_size: 32", "batchsize: 32"))
    assert main(["train", str(bad)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "'train.batchsize'" in line and "did you mean 'train.batch_size'" in line
    assert not (tmp_path / "runs").exists()
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "file not found" in _error_line(capsys.readouterr().err)


def test_sample_errors(tmp_path, capsys, trained_run):
    assert main(["sample", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 2
    assert "no such file" in _error_line(capsys.readouterr().err)
    assert main(["sample", str(trained_run.run_dir), "--out", str(tmp_path / "x.gif")]) == 2
    assert ".png, .npz or /" in _error_line(capsys.readouterr().err)
    pickled = tmp_path / "model.pt"
    torch.save({"w": torch.ones(1)}, pickled)
    assert main(["sample", str(pickled), "--out", str(tmp_path / "x.png")]) == 2
    assert "pickle" in _error_line(capsys.readouterr().err)


def test_sample_into_directory(tmp_path, capsys, trained_run):
    out = str(tmp_path / "pngs") + "/"
    assert main(["sample", str(trained_run.checkpoint), "--num", "3", "--out", out]) == 0
    assert len(list((tmp_path / "pngs").glob("*.png"))) == 3


def test_config_lists_every_field(capsys):
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    for key in ("data.name", "optim.lr_g", "train.ema_decay", "objective.instance_noise", "checkpoint.keep"):
        assert key in out
    line = next(line for line in out.splitlines() if line.startswith("optim.lr_g "))
    assert "0.0002" in line and "learning rate of G" in line


def test_config_prints_the_resolved_config(tiny_yaml, capsys):
    import yaml

    assert main(["config", str(tiny_yaml), "--set", "train.seed=3", "optim.lr_g=1e-4"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["train"]["seed"] == 3 and resolved["optim"]["lr_g"] == pytest.approx(1e-4)
    assert resolved["model"]["generator"] == {"name": "dcgan", "width": 8}
    assert main(["config", str(tiny_yaml), "--set", "train.sed=3"]) == 2
    assert "did you mean 'train.seed'" in _error_line(capsys.readouterr().err)


@pytest.mark.parametrize("argv", [[], ["sample", "run"], ["train", "c.yaml", "--steps", "-1"],
                                  ["sample", "run", "--out", "x.png", "--num", "0"], ["fly"]])
def test_argument_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: gankit" in capsys.readouterr().err


def test_version(capsys):
    from gankit import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out


def test_train_restores_signal_handlers(tmp_path, tiny_yaml, capsys):
    before = signal.getsignal(signal.SIGINT)
    assert main(["train", str(tiny_yaml), "--run-dir", str(tmp_path / "run"), "--steps", "1"]) == 0
    assert signal.getsignal(signal.SIGINT) is before


def test_stop_flag_first_signal_requests_second_aborts(capsys):
    flag = StopFlag()
    flag._handle(signal.SIGINT, None)
    assert flag.requested and "SIGINT received" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        flag._handle(signal.SIGTERM, None)


# ---------------------------------------------------------------------------------------------
# A real process


def _gankit(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "gankit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_subprocess_end_to_end(tmp_path, tiny_yaml):
    proc = _gankit("train", str(tiny_yaml), "--run-dir", "run", "--steps", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "reached its step target at step 2" in proc.stdout
    proc = _gankit("sample", "run", "--num", "4", "--out", "s.npz", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "s.npz") as npz:
        assert npz["images"].shape == (4, 28, 28, 1)

    _corrupt_tensor_byte(CheckpointDir(tmp_path / "run" / "checkpoints").latest())
    proc = _gankit("sample", "run", "--num", "4", "--out", "again.png", cwd=tmp_path)
    assert proc.returncode != 0
    assert "damaged" in _error_line(proc.stderr)
    assert "Traceback" not in proc.stderr and not (tmp_path / "again.png").exists()

    proc = _gankit("train", str(tiny_yaml), "--set", "optim.lr_gg=1", cwd=tmp_path)
    assert proc.returncode == 2
    assert "did you mean 'optim.lr_g'" in _error_line(proc.stderr)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_subprocess_signal_saves_and_prints_the_resume_command(tmp_path, tiny_yaml, capsys, monkeypatch, signum):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "gankit", "train", str(tiny_yaml), "--run-dir", "run",
                             "--steps", "100000", "--set", "log.every=1"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        metrics = tmp_path / "run" / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not (metrics.is_file() and metrics.read_text().strip()):  # training has started
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.1)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err  # 130 for SIGINT, 143 for SIGTERM
    assert f"{signal.Signals(signum).name} received" in err and "Traceback" not in err
    latest = CheckpointDir(tmp_path / "run" / "checkpoints").latest()
    _, meta = load_checkpoint(latest)
    assert meta["step"] >= 1
    assert f"was interrupted at step {meta['step']}; checkpoint run/checkpoints/{latest.name}" in out
    command = f"gankit train {tiny_yaml} --run-dir run --resume --steps 100000 --set log.every=1"
    assert f"gankit: continue with: {command}\n" in out

    # the printed command continues the run (here to one more step)
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(command)[1:]
    argv[argv.index("--steps") + 1] = str(meta["step"] + 1)
    assert main(argv) == 0
    assert f"reached its step target at step {meta['step'] + 1}" in capsys.readouterr().out


def test_second_signal_aborts_the_step_and_says_how_to_resume(tmp_path, tiny_yaml, capsys, monkeypatch):
    """A second Ctrl-C during a step raises KeyboardInterrupt there: the last checkpoint stands."""
    import importlib

    LOOP = importlib.import_module("gankit.train")  # the module (gankit.train is also the function)

    real_step, calls = LOOP.train_step, []

    def step_then_abort(game, run):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_step(game, run)

    monkeypatch.setattr(LOOP, "train_step", step_then_abort)
    run = tmp_path / "run"
    assert main(["train", str(tiny_yaml), "--run-dir", str(run), "--set", "checkpoint.every=1"]) == 130
    latest = run / "checkpoints" / "step_00000002.safetensors"
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"gankit: aborted; the last checkpoint is {latest}; continue with: "
        f"gankit train {tiny_yaml} --run-dir {run} --resume --set checkpoint.every=1")
    assert load_checkpoint(CheckpointDir(run / "checkpoints").latest())[1]["step"] == 2


@pytest.mark.parametrize("argv", [["config"], ["init", "--list"]])
def test_a_reader_that_stops_early_is_no_error(tmp_path, argv):
    """Issue 27, defect 22: `gankit init --list | head` printed "gankit: error: Broken pipe"; the pipe is
    closed here before gankit writes a byte, so every write meets it."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "gankit", *argv], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1 and err == "", err
