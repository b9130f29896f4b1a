"""gankit.distributed: multi-process data-parallel training on CPU processes over gloo (loopback).

Process start-up is dominated by ``import torch``, so the in-Python workers are forked from a
multiprocessing fork server that imported gankit once; the CLI tests start real ``python -m gankit train
--nproc 2`` processes (torchrun's launcher and two workers).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from conftest import TINY_RING, assert_states_equal, make_cfg, step_game
from gankit.checkpoint import CheckpointDir, load_checkpoint
from gankit.config import from_dict
from gankit.data import BatchStream, build_dataset
from gankit.data.source import LazySource
from gankit.train import prepare, train

REPO = Path(__file__).resolve().parents[1]

# MLPs without BatchNorm, dropout or per-sample noise: two processes must equal one exactly (up to float
# summation order), since the latents are the same global draw and the gradients are averaged.
EXACT = make_cfg(TINY_RING, "train.batch_size=64", "train.threads=1", "optim.lr_g=1e-3", "optim.lr_d=1e-3")
# Every per-process stream in use (dropout in D, instance noise) and an EMA: resume must restore them all.
STREAMS = make_cfg(TINY_RING, "model.discriminator={name: mlp, widths: [32], dropout: 0.2}",
                   "objective.instance_noise=0.1", "objective.instance_noise_steps=30", "train.ema_decay=0.9",
                   "train.threads=1",
                   "log.every=2", "checkpoint.every=2", "checkpoint.keep=5")


def _worker(rank: int, world: int, init: str, job: str, cfg: dict[str, Any], out: str, steps: int) -> None:
    """One process of a ``world``-process run: ``steps`` train steps (saving its weights), or ``train``
    (``resume``: with resume=True) into the run directory ``out``."""
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback: no network needed
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        if job in ("train", "resume"):
            train(cfg, out, resume=job == "resume")
            return
        trainer = prepare(from_dict(cfg))
        for _ in range(steps):
            step_game(trainer, steps)
        state = {f"g.{k}": v for k, v in trainer.g.state_dict().items()}
        state.update({f"d.{k}": v for k, v in trainer.d.state_dict().items()})
        save_file({k: v.contiguous() for k, v in state.items()}, f"{out}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def _run_workers(tmp_path: Path, job: str, cfg: dict[str, Any], out: Path, steps: int = 0, world: int = 2) -> None:
    import torch.multiprocessing as torch_mp

    multiprocessing.get_context("forkserver").set_forkserver_preload(["gankit.train", "torch._dynamo"])
    init = tmp_path / f"init-{job}-{out.name}"
    torch_mp.start_processes(_worker, args=(world, str(init), job, cfg, str(out), steps), nprocs=world,
                        join=True, start_method="forkserver")


def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path):
    steps = 6
    _run_workers(tmp_path, "steps", EXACT, tmp_path, steps)
    rank0, rank1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    for key in rank0:  # the processes hold the same weights, bit for bit
        assert torch.equal(rank0[key], rank1[key]), key
    single = prepare(from_dict(EXACT))
    initial = {k: v.clone() for k, v in single.g.state_dict().items()}
    for _ in range(steps):
        step_game(single, steps)
    for net in ("g", "d"):
        for key, value in getattr(single, net).state_dict().items():
            torch.testing.assert_close(rank0[f"{net}.{key}"], value, rtol=1e-5, atol=1e-6, msg=f"{net}.{key}")
    assert any(not torch.equal(initial[k], v) for k, v in single.g.state_dict().items())  # it trained


def test_each_process_takes_its_slice_of_the_same_global_batch():
    source = build_dataset(from_dict(TINY_RING).data)
    device = torch.device("cpu")
    whole = BatchStream(source, 64, 0, device)
    parts = [BatchStream(source, 64, 0, device, rank=r, world_size=4) for r in range(4)]
    lazy = [BatchStream(LazySource(source.data, source.shape, is_image=False), 64, 0, device, rank=r,
                        world_size=4) for r in range(4)]
    for _ in range(whole.batches_per_epoch + 2):  # into the second epoch
        expected, _ = whole.next()
        assert torch.equal(torch.cat([p.next()[0] for p in parts]), expected)
        assert torch.equal(torch.cat([p.next()[0] for p in lazy]), expected)
    assert parts[3].state_dict() == whole.state_dict()  # the global position: resumable by any number
    with pytest.raises(ValueError, match="divisible by 3"):
        BatchStream(source, 64, 0, device, rank=0, world_size=3)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "GLOO_SOCKET_IFNAME": "lo"}
    return subprocess.run([sys.executable, "-m", "gankit", "train", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_nproc_2_writes_one_run_and_resumes_exactly(tmp_path):
    config, run = tmp_path / "ring.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(STREAMS))
    first = _cli(str(config), "--run-dir", str(run), "--steps", "4", "--nproc", "2")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("reached its step target at step 4") == 1  # rank 0 alone reports
    assert "2 processes x 32 = 64 images per step" in first.stderr
    ckpts = CheckpointDir(run / "checkpoints")
    assert [p.name for p in ckpts.all()] == ["step_00000002.safetensors", "step_00000004.safetensors"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]  # one writer
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml", "metrics.jsonl", "samples"]
    state, meta = load_checkpoint(ckpts.latest())
    assert meta["world_size"] == 2 and meta["images_seen"] == 4 * 64
    assert [r["rank"] for r in state["rng"]["ranks"]] == [0, 1]
    assert not torch.equal(state["rng"]["ranks"][0]["train"], state["rng"]["ranks"][1]["train"])

    _run_workers(tmp_path, "resume", make_cfg(STREAMS, "train.steps=6"), run)  # what `--resume` runs
    resumed, meta = load_checkpoint(ckpts.latest())
    assert meta["step"] == 6

    straight = tmp_path / "straight"
    _run_workers(tmp_path, "train", make_cfg(STREAMS, "train.steps=6"), straight)
    expected, _ = load_checkpoint(CheckpointDir(straight / "checkpoints").latest())
    for key in ("g", "d", "g_ema", "opt_g", "opt_d", "rng"):
        assert_states_equal(resumed[key], expected[key], key)

    # another number of processes continues too: the same data position, streams derived per process
    single = train(make_cfg(STREAMS, "train.steps=8"), run, resume=True)
    _, meta = load_checkpoint(single.checkpoint)
    assert single.step == 8 and meta["world_size"] == 1 and meta["images_seen"] == 8 * 64
    _run_workers(tmp_path, "resume", make_cfg(STREAMS, "train.steps=10"), run)  # and back to two
    state, meta = load_checkpoint(ckpts.latest())
    assert meta["step"] == 10 and meta["world_size"] == 2 and meta["data"]["index"] == 10 % 8
    assert not torch.equal(state["rng"]["ranks"][0]["train"], state["rng"]["ranks"][1]["train"])


def test_the_resume_hint_keeps_the_number_of_processes():
    from gankit.cli import _resume_command, build_parser

    args = build_parser().parse_args(["train", "c.yaml", "--nproc", "2", "--steps", "9"])
    assert _resume_command(args, "runs/x") == "gankit train c.yaml --run-dir runs/x --resume --steps 9 --nproc 2"


def test_cli_rejects_a_batch_that_does_not_split_before_launching(tmp_path, capsys):
    from gankit.cli import main

    config = tmp_path / "ring.yaml"
    config.write_text(yaml.safe_dump(make_cfg(STREAMS, "train.batch_size=63")))
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run"), "--nproc", "2"]) == 2
    assert "train.batch_size: 63 is the global batch of 2 processes and must be divisible by 2" in \
        capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_self_conditioned_processes_share_rank_zeros_clusters(tmp_path):
    cfg = make_cfg(STREAMS, "model.self_condition=3", "model.recluster_every=2", "train.steps=5")
    _run_workers(tmp_path, "train", cfg, tmp_path / "run")
    state, meta = load_checkpoint(CheckpointDir(tmp_path / "run" / "checkpoints").latest())
    assert meta["num_classes"] == 3 and meta["step"] == 5 and meta["world_size"] == 2
    assert state["clusters"]["labels"].shape == (512,)
    assert torch.allclose(state["clusters"]["prior"].sum(), torch.tensor(1.0))
    # rank 1 trained on rank 0's clusters: resuming in two processes continues from the saved ones
    _run_workers(tmp_path, "resume", make_cfg(cfg, "train.steps=7"), tmp_path / "run")
    assert load_checkpoint(CheckpointDir(tmp_path / "run" / "checkpoints").latest())[1]["step"] == 7
