"""Crash safety: a real training process killed with SIGKILL at random moments, again and again.

After every kill, every checkpoint file in the run directory must load (checksum verified) and
``latest`` must name one of them and never go backwards; the run then resumes with ``--resume``. At the
end one more ``gankit train --resume`` finishes the run, and its weights equal, bit for bit, those of the
same run trained without interruption: a kill costs the steps since the last checkpoint, nothing else.

Process start-up is dominated by ``import torch`` and the ``torch._dynamo`` import of the first optimizer
(2-5 s, 10-30 s on a busy 2-core machine), so the processes are forked from a multiprocessing fork server
that imported them once; each is still a separate process running ``gankit.cli.main`` on the real run
directory, and SIGKILL gives it no chance to clean up. (tests/test_cli.py runs ``python -m gankit`` itself,
with SIGINT and SIGTERM.)
"""
from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_states_equal, make_cfg
from gankit.checkpoint import _TEMPORARY, CheckpointDir, CheckpointError, load_checkpoint
from gankit.cli import main
from gankit.config import read_yaml
from gankit.train import train

KILLS = 24
# shares of the kills: at a random time after the start (start-up, resume, first steps); at a random time
# after 1-3 more checkpoints (a step or a save); the moment a save's temporary file appears (mid-write)
STARTUP_KILLS, STEP_KILLS = 0.25, 0.35

# Tiny MLPs and a checkpoint every step, so that many kills land inside a save.
CRASH_YAML = """\
data: {name: mnist10k, limit: 256}
model:
  latent_dim: 8
  generator: {name: mlp, widths: [16]}
  discriminator: {name: mlp, widths: [16]}
train: {device: cpu, seed: 0, batch_size: 16, steps: 1000000, ema_decay: 0.9, threads: 1}
log: {every: 4, sample_every: 0, grid: 2, progress: false, tensorboard: false, plot: false}
checkpoint: {every: 1, keep: 2}
"""


def _unloadable(folder: Path) -> list[str]:
    """Every file a reader could take for a checkpoint, with the reason it does not load."""
    bad = []
    for path in CheckpointDir(folder).all():
        try:
            load_checkpoint(path)
        except CheckpointError as exc:
            bad.append(str(exc))
    return bad


def _temporaries(*folders: Path) -> list[Path]:
    return [p for f in folders if f.is_dir() for p in f.iterdir() if _TEMPORARY.match(p.name)]


def _latest_step(pointer: Path) -> int:
    try:
        return json.loads(pointer.read_text())["step"]
    except (OSError, ValueError):  # not written yet (latest.json itself is replaced atomically)
        return -1


def _wait_for(condition: Any, proc: multiprocessing.process.BaseProcess, poll: float) -> None:
    deadline = time.monotonic() + 300
    while not condition():
        assert proc.is_alive(), f"the training process exited on its own (exit code {proc.exitcode})"
        assert time.monotonic() < deadline, "no progress for 300 s"
        time.sleep(poll)


def _kill_at_a_random_moment(proc: multiprocessing.process.BaseProcess, run: Path, rng: random.Random) -> None:
    """SIGKILL ``proc`` at a moment drawn from ``rng``: the moments are tied to the run's progress, not to
    the clock alone, so that kills land in steps and writes however slow the machine is today."""
    ckpt_dir = run / "checkpoints"
    pointer = ckpt_dir / "latest.json"
    try:
        kind = rng.random()
        if kind < STARTUP_KILLS:
            time.sleep(rng.uniform(0.0, 0.5))
        elif kind < STARTUP_KILLS + STEP_KILLS:
            target = max(_latest_step(pointer), 0) + rng.randint(1, 3)
            _wait_for(lambda: _latest_step(pointer) >= target, proc, 0.002)
            time.sleep(rng.uniform(0.0, 0.02))
        else:  # one more checkpoint first (progress), then the next save's temporary file
            target = max(_latest_step(pointer), 0) + 1
            _wait_for(lambda: _latest_step(pointer) >= target, proc, 0.002)
            _wait_for(lambda: bool(_temporaries(ckpt_dir)), proc, 0.0005)
    finally:
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join()


def test_sigkill_at_random_moments_never_leaves_an_unloadable_checkpoint(tmp_path):
    config, run = tmp_path / "crash.yaml", tmp_path / "run"
    config.write_text(CRASH_YAML)
    ckpt_dir = run / "checkpoints"
    argv = ["train", str(config), "--run-dir", str(run), "--resume"]
    ctx = multiprocessing.get_context("forkserver")
    # torch.optim imports torch._dynamo on first use: seconds per process, so the server pays it once
    ctx.set_forkserver_preload(["gankit.cli", "gankit.train", "torch._dynamo"])
    rng = random.Random(0)
    unloadable: list[str] = []
    steps, cut_writes = [0], 0
    t0 = time.perf_counter()
    for i in range(KILLS):
        proc = ctx.Process(target=main, args=(argv,), daemon=True)
        proc.start()
        if i == 0:
            server_seconds = time.perf_counter() - t0  # the first start() waits for the server's imports
        _kill_at_a_random_moment(proc, run, rng)
        assert proc.exitcode == -signal.SIGKILL  # it was still training: steps is 10**6
        unloadable += _unloadable(ckpt_dir)
        cut_writes += bool(_temporaries(run, ckpt_dir))  # a save (or config.yaml) was cut mid-write
        pointer = ckpt_dir / "latest.json"
        if pointer.exists():  # replaced atomically, and only after the file it names is complete
            assert (ckpt_dir / json.loads(pointer.read_text())["file"]).is_file()
        latest = CheckpointDir(ckpt_dir).latest()
        if latest is not None:
            assert not _TEMPORARY.match(latest.name)
            steps.append(load_checkpoint(latest)[1]["step"])
            assert steps[-1] >= steps[-2], "latest went backwards: a kill lost a committed checkpoint"
    kill_seconds = time.perf_counter() - t0 - server_seconds
    assert unloadable == []

    # one more process resumes and finishes the run; the temporaries of cut saves are gone
    final = steps[-1] + 3
    done = ctx.Process(target=main, args=(argv + ["--steps", str(final)],))
    done.start()
    done.join(timeout=300)
    assert done.exitcode == 0
    assert _temporaries(run, ckpt_dir) == [] and _unloadable(ckpt_dir) == []
    killed_state, meta = load_checkpoint(CheckpointDir(ckpt_dir).latest())
    assert meta["step"] == final

    # the same run without kills ends in the same state
    straight = train(make_cfg(read_yaml(config), f"train.steps={final}"), tmp_path / "straight")
    straight_state, _ = load_checkpoint(straight.checkpoint)
    for key in ("g", "d", "g_ema", "opt_g", "opt_d", "rng"):
        assert_states_equal(killed_state[key], straight_state[key], key)
    print(f"\nfork server start-up {server_seconds:.1f} s; {KILLS} SIGKILLs in {kill_seconds:.1f} s "
          f"({cut_writes} cut a write short), 0 unloadable checkpoints; resumed and finished at step {final}")


def test_temporaries_of_a_killed_save_are_ignored_then_removed(tmp_path):
    """What a kill inside ``atomic_write_bytes`` leaves: never ``latest``, gone on the next start."""
    cfg = make_cfg(read_yaml(_write(tmp_path)), "train.steps=2")
    run = tmp_path / "run"
    result = train(cfg, run)
    ckpt_dir = run / "checkpoints"
    # a newer checkpoint, a pointer and a config.yaml, each cut short before its rename
    debris = [ckpt_dir / ".step_00000004.safetensors.abcd1234.tmp", ckpt_dir / ".latest.json.x_y9z0ab.tmp",
              run / ".config.yaml.qwertyui.tmp"]
    for path in debris:
        path.write_bytes(b"partial")
    (ckpt_dir / "latest.json").unlink()  # even without the pointer, a temporary is never a candidate
    assert CheckpointDir(ckpt_dir).latest() == result.checkpoint
    keep = run / "notes.tmp"  # not a name atomic_write_bytes makes: left alone
    keep.write_text("mine")
    resumed = train(make_cfg(read_yaml(_write(tmp_path)), "train.steps=4"), run, resume=True)
    assert resumed.step == 4 and not any(p.exists() for p in debris) and keep.exists()


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "crash.yaml"
    path.write_text(CRASH_YAML)
    return path


# ---------------------------------------------------------------------------------------------
# Disk full, read-only run directory


class _DiskFullAfterHalf:
    """A file whose writes store half of the data, then fail as a full disk does."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh

    def write(self, data: bytes) -> int:
        self.fh.write(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)

    def __enter__(self) -> "_DiskFullAfterHalf":
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


def _fill_disk_for(monkeypatch: pytest.MonkeyPatch, name_part: str) -> None:
    """Every atomic write whose target name contains ``name_part`` hits a full disk half-way."""
    real_fdopen, real_mkstemp = os.fdopen, tempfile.mkstemp
    doomed: set[int] = set()

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = real_mkstemp(*args, **kwargs)
        if name_part in Path(name).name:
            doomed.add(fd)
        return fd, name

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        fh = real_fdopen(fd, *args, **kwargs)
        return _DiskFullAfterHalf(fh) if fd in doomed else fh

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "fdopen", fdopen)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("victim, message", [
    ("step_00000004", "cannot write checkpoint"),  # the checkpoint itself
    ("latest.json", "cannot write"),                 # its pointer, after the checkpoint was written
])
def test_disk_full_during_a_save_keeps_the_previous_checkpoint_as_latest(tmp_path, monkeypatch, victim, message):
    cfg = make_cfg(read_yaml(_write(tmp_path)), "train.steps=6", "checkpoint.every=2", "checkpoint.keep=3")
    run = tmp_path / "run"
    ckpt_dir = run / "checkpoints"
    _fill_disk_for(monkeypatch, f".{victim}.")
    with pytest.raises(CheckpointError) as err:
        train(cfg, run)
    text = str(err.value)
    assert "\n" not in text and message in text and "No space left on device" in text and str(ckpt_dir) in text
    monkeypatch.undo()
    assert _temporaries(run, ckpt_dir) == [] and _unloadable(ckpt_dir) == []
    latest = CheckpointDir(ckpt_dir).latest()
    assert latest.name == "step_00000002.safetensors" and load_checkpoint(latest)[1]["step"] == 2
    # once there is room again, the run resumes from it and finishes
    assert train(cfg, run, resume=True).step == 6


def _cli_run_of_two_steps(tmp_path: Path, capsys: pytest.CaptureFixture) -> tuple[Path, Path, dict[str, bytes]]:
    """A config, its run directory after `gankit train --steps 2`, and the checkpoint files it left."""
    config = _write(tmp_path)
    run = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run), "--steps", "2"]) == 0
    before = _files(run / "checkpoints")
    capsys.readouterr()
    return config, run, before


def test_disk_full_through_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    config, run, before = _cli_run_of_two_steps(tmp_path, capsys)
    _fill_disk_for(monkeypatch, ".step_")
    assert main(["train", str(config), "--run-dir", str(run), "--steps", "4", "--resume"]) == 2
    # the run's start line, then one error line
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("gankit: resuming")]
    assert len(err) == 1 and err[0].startswith("gankit: error: cannot write checkpoint")
    assert "step_00000003.safetensors: No space left on device" in err[0]
    assert _files(run / "checkpoints") == before


def _read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Writes into ``folder`` fail as on a read-only mount (chmod does not stop root, who runs CI)."""
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: Any, dir: Any = None, **kwargs: Any) -> tuple[int, str]:
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_read_only_run_directory(tmp_path, monkeypatch, capsys):
    config, run, before = _cli_run_of_two_steps(tmp_path, capsys)
    _read_only(monkeypatch, run)
    assert main(["train", str(config), "--run-dir", str(run), "--steps", "4", "--resume"]) == 2
    line = capsys.readouterr().err.strip()
    assert line == f"gankit: error: cannot write to the run directory {run}: Read-only file system"
    assert _files(run / "checkpoints") == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_run_directory_by_permissions(tmp_path, capsys):
    config = _write(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o555)
    try:
        assert main(["train", str(config), "--run-dir", str(run), "--steps", "2"]) == 2
        line = capsys.readouterr().err.strip()
        assert line == f"gankit: error: cannot write to the run directory {run}: Permission denied"
        assert list(run.iterdir()) == []
    finally:
        run.chmod(0o755)


# ---------------------------------------------------------------------------------------------
# Two processes on one run directory (issue 16)


def test_a_second_process_on_a_run_directory_is_refused_while_the_first_holds_it(tmp_path, capsys):
    import subprocess
    import sys

    config, run = _write(tmp_path), tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep
           + os.environ.get("PYTHONPATH", "")}
    first = subprocess.Popen([sys.executable, "-m", "gankit", "train", str(config), "--run-dir", str(run),
                              "--set", "train.seed=0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pointer = run / "checkpoints" / "latest.json"
    try:
        deadline = time.monotonic() + 300
        while _latest_step(pointer) < 2:
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        for extra in (["--set", "train.seed=1"], ["--resume"]):  # a fresh run, then a resume, on its directory
            assert main(["train", str(config), "--run-dir", str(run), *extra]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0] == (f"gankit: error: the run directory {run} is in use by another "
                                                "gankit process (one training process per run directory); wait "
                                                "until it ends, or choose another --run-dir"), err
    finally:
        first.send_signal(signal.SIGINT)  # saves a checkpoint and exits
        out, err = first.communicate(timeout=300)
    assert first.returncode == 130, err
    ckpts = CheckpointDir(run / "checkpoints").all()
    assert ckpts and _unloadable(run / "checkpoints") == []
    assert all(load_checkpoint(p)[1]["config"]["train"]["seed"] == 0 for p in ckpts)  # all the first's own
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "step" in line]
    assert len(steps) == len(set(steps))  # no row logged twice
    # once the first has ended (or was killed: the kernel drops the lock), the directory is free again
    assert main(["train", str(config), "--run-dir", str(run), "--resume", "--steps",
                 str(load_checkpoint(ckpts[-1])[1]["step"] + 1)]) == 0


def test_write_errors_name_the_target_not_the_temporary_file(tmp_path, monkeypatch, capsys):
    """Issue 16, defect 11: a full disk under a sample PNG, a read-only target of `sample --out` and of
    `eval --json`: the one error line names the file the user asked for."""
    config, run, _ = _cli_run_of_two_steps(tmp_path, capsys)
    out = tmp_path / "ro"
    out.mkdir()
    _read_only(monkeypatch, out)
    for argv, target in ((["sample", str(run), "--out", str(out / "x.npz"), "--num", "4"], out / "x.npz"),
                         (["eval", str(run), "--ref", "mnist10k", "--num", "8", "--metrics", "fid",
                           "--json", str(out / "e.json")], out / "e.json")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"gankit: error: {target}: Read-only file system"], err
    monkeypatch.undo()
    _fill_disk_for(monkeypatch, ".grid.png.")
    assert main(["sample", str(run), "--out", str(tmp_path / "grid.png"), "--num", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gankit: error: {tmp_path / 'grid.png'}: No space left on device"], err
