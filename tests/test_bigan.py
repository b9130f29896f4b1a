"""gankit.games.bigan and gankit.models.bigan: the BiGAN / ALI game through every feature of the loop (resume,
rollback, health alarms, two processes), its grids, `gankit encode` and `gankit sample` of its runs."""
from __future__ import annotations

import importlib
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_states_equal, make_cfg, step_game
from gankit.checkpoint import CheckpointDir, load_checkpoint
from gankit.cli import main
from gankit.config import ConfigError, from_dict
from gankit.games.bigan import BiGAN, PairJudge, pair
from gankit.models.bigan import ConvEncoder, JointDiscriminator
from gankit.train import prepare, train

LOOP = importlib.import_module("gankit.train")  # the module (gankit.train is also the function)

# Tiny nets on 256 digits; every stream in use: dropout in D, instance noise, k = 2 D updates per step.
BIGAN = {
    "game": {"name": "bigan"},
    "data": {"name": "mnist10k", "limit": 256},
    "model": {"latent_dim": 8, "generator": {"name": "dcgan", "width": 8},
              "discriminator": {"name": "dcgan", "width": 8, "z_width": 16, "hidden": 32, "dropout": 0.2},
              "encoder": {"name": "dcgan", "width": 8}},
    "objective": {"instance_noise": 0.1, "instance_noise_steps": 30},
    "train": {"device": "cpu", "threads": 1, "seed": 0, "batch_size": 32, "steps": 10, "d_steps": 2},
    "log": {"every": 5, "sample_every": 10, "grid": 2, "progress": False, "tensorboard": False, "plot": False},
    "checkpoint": {"every": 10, "keep": 5},
    "perf": {"amp": "fp32"},
}


def _weights(game: BiGAN) -> dict[str, torch.Tensor]:
    return {name: torch.cat([p.detach().flatten().clone() for p in net.parameters()])
            for name, net in game.nets.items()}


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_encoder_and_joint_discriminator_shapes(shape):
    e, d = ConvEncoder(shape, 12, width=8), JointDiscriminator(shape, 12, width=8, z_width=16, hidden=32)
    x = torch.randn(5, *shape)
    z = e(x)
    assert z.shape == (5, 12)
    assert d(x, z).shape == (5,)
    judge = PairJudge(d.eval(), shape)
    assert torch.equal(judge(pair(x, z)), d(x, z))  # the packed pair is the pair


def test_a_few_steps_train_g_e_and_d_and_the_losses_move():
    game = prepare(from_dict(BIGAN))
    assert isinstance(game, BiGAN) and [p.name for p in game.phases] == ["D", "G"]
    assert len(game.data.source) == 256 and game.recon.shape == (2, 1, 28, 28)
    before = _weights(game)
    rows = [step_game(game, 10) for _ in range(4)]
    for name, w in _weights(game).items():
        assert not torch.equal(w, before[name]), f"{name} did not change"
        assert torch.isfinite(w).all()
    assert {"loss_d", "loss_g", "loss_e", "d_real", "d_fake"} <= set(rows[-1])
    assert rows[0]["loss_d"] != rows[-1]["loss_d"] and rows[0]["loss_e"] != rows[-1]["loss_e"]
    assert game.diversity(torch.randn(64, 8)) > 0


def test_mnist10k_trains_on_the_first_9000_digits_and_shows_held_out_ones():
    from gankit.data.bundled import shuffled_mnist10k

    game = prepare(from_dict(make_cfg(BIGAN, "data.limit=null", "log.grid=4")))
    images, _ = shuffled_mnist10k()
    assert len(game.data.source) == 9000
    assert torch.equal(game.recon, torch.from_numpy(images[9000:9008]).unsqueeze(1))


@pytest.mark.parametrize("objective", ["hinge", "wgan-gp", "rpgan"])
def test_other_objectives_train_e_too(objective):
    game = prepare(from_dict(make_cfg(BIGAN, f"objective.name={objective}", "objective.instance_noise=0")))
    before = _weights(game)
    stats = step_game(game, 10)
    assert all(math.isfinite(float(v)) for v in stats.values())
    assert not torch.equal(_weights(game)["e"], before["e"])


def test_alices_cycle_term_trains_g_and_e_to_reconstruct():
    game = prepare(from_dict(make_cfg(BIGAN, "game.lambda_recon=2")))
    rows = [step_game(game, 10) for _ in range(3)]
    assert all(0 < float(r["recon_l1"]) < 2 for r in rows) and "loss_e" in rows[-1]


@pytest.mark.parametrize("override, message", [
    ("objective.name=lsgan", "objective.name: the bigan game trains E .* which lsgan does not define"),
    ("train.ema_decay=0.9", "train.ema_decay: the bigan game trains with no EMA"),
    ("model.conditional=auto", "model.conditional: the bigan game trains with no class labels"),
    ("data.name=ring", "data.name: the bigan game trains on images held in memory; ring holds points"),
    ("model.encoder={name: resnet}", "model.encoder.name: unknown encoder 'resnet'"),
    ("model.discriminator={name: dcgan, hiden: 3}", "did you mean 'model.discriminator.hidden'"),
])
def test_what_the_game_does_not_do_is_refused_by_name(override, message):
    with pytest.raises(ConfigError, match=message):
        prepare(from_dict(make_cfg(BIGAN, override)))


def test_resume_is_bit_exact(tmp_path):
    train(make_cfg(BIGAN, "train.steps=20"), tmp_path / "resumed")
    train(make_cfg(BIGAN, "train.steps=40"), tmp_path / "resumed", resume=True)
    train(make_cfg(BIGAN, "train.steps=40"), tmp_path / "straight")
    resumed, meta = load_checkpoint(CheckpointDir(tmp_path / "resumed" / "checkpoints").latest())
    expected, _ = load_checkpoint(CheckpointDir(tmp_path / "straight" / "checkpoints").latest())
    assert meta["step"] == 40 and meta["game"] == "bigan" and set(resumed) >= {"g", "d", "e", "opt_g", "opt_d"}
    assert_states_equal(resumed, expected)


def test_the_grid_shows_samples_then_rows_of_digits_and_reconstructions(tmp_path):
    result = train(BIGAN, tmp_path / "run")
    grid = Image.open(result.run_dir / "samples" / "step_000010.png")
    # 2 x 2 samples, then one row of 2 digits and one of their reconstructions; 28 px + 2 px padding, 4x
    assert grid.size == ((2 * 30 + 2) * 4, (4 * 30 + 2) * 4)


def test_a_diverged_step_rolls_back_with_lower_learning_rates(tmp_path, monkeypatch):
    original = LOOP.train_step

    def nan_at_13(game, run):
        stats = original(game, run)
        if run.step == 13 and not getattr(nan_at_13, "done", False):
            nan_at_13.done = True
            stats["loss_e"] = torch.tensor(math.nan)
        return stats

    monkeypatch.setattr(LOOP, "train_step", nan_at_13)
    result = train(make_cfg(BIGAN, "train.steps=20"), tmp_path / "run")
    state, meta = load_checkpoint(result.checkpoint)
    assert result.step == 20 and meta["rollbacks"] == 1
    assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(1e-4)  # G and E: one optimizer
    assert "diverged" in (tmp_path / "run" / "events.jsonl").read_text()


def test_a_collapsed_generator_raises_the_alarm(tmp_path, monkeypatch):
    original = LOOP.train_step

    def frozen_g(game, run):
        stats = original(game, run)
        with torch.no_grad():
            for p in game.nets["g"].parameters():
                p.mul_(0.0)
        return stats

    monkeypatch.setattr(LOOP, "train_step", frozen_g)
    train(make_cfg(BIGAN, "train.steps=20", "log.every=2", "health.patience=3"), tmp_path / "run")
    assert "collapse" in (tmp_path / "run" / "events.jsonl").read_text()


@pytest.fixture(scope="module")
def bigan_run(tmp_path_factory):
    return train(make_cfg(BIGAN, "log.sample_every=0"), tmp_path_factory.mktemp("bigan") / "run").run_dir


def test_encode_round_trip_from_a_folder_and_an_npz(bigan_run, tmp_path, capsys):
    from gankit.data.bundled import shuffled_mnist10k
    from gankit.games.bigan import load_bigan

    images, _ = shuffled_mnist10k()
    (tmp_path / "digits" / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(images[9000 + i]).save(tmp_path / "digits" / ("sub" if i else "") / f"d{i}.png")
    np.savez(tmp_path / "digits.npz", images=images[9000:9010])
    assert main(["encode", str(bigan_run), "--input", str(tmp_path / "digits"), "--out",
                 str(tmp_path / "a.npz")]) == 0
    assert main(["encode", str(bigan_run), "--input", str(tmp_path / "digits.npz"), "--out",
                 str(tmp_path / "b.npz"), "--grid", str(tmp_path / "recon.png")]) == 0
    assert "latents (8 each) of 10 images" in capsys.readouterr().out
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a["latents"].shape == (3, 8) and a["latents"].dtype == np.float32
    assert list(a["names"]) == ["d0", "sub/d1", "sub/d2"] and list(b["names"][:2]) == ["000000", "000001"]
    # the same digit from a PNG and from the array: the same latent, as the library computes it
    assert np.allclose(a["latents"][0], b["latents"][0])
    run = load_bigan(bigan_run, torch.device("cpu"))
    expected = run.encode(torch.from_numpy(images[9000:9010]).unsqueeze(1))
    assert np.allclose(b["latents"], expected.numpy())
    # 8 per row: one row of 8 digits and its reconstructions (the 2 left over are not shown)
    assert Image.open(tmp_path / "recon.png").size == ((8 * 30 + 2) * 4, (2 * 30 + 2) * 4)


def test_encode_refuses_bad_input_in_one_line(bigan_run, tmp_path, capsys):
    gan = train(make_cfg(BIGAN, "game.name=gan", "model.discriminator={name: mlp, widths: [16]}",
                         "train.steps=1"), tmp_path / "gan").run_dir
    np.savez(tmp_path / "big.npz", images=np.zeros((2, 32, 32), np.uint8))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "big.png")
    (tmp_path / "folder").mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "folder" / "x.png")
    capsys.readouterr()
    cases = [([str(gan), "--input", str(tmp_path / "big.npz")], "is a gan run; encode needs a bigan run"),
             ([str(bigan_run), "--input", str(tmp_path / "missing.npz")], "--input .*missing.npz: no such file"),
             ([str(bigan_run), "--input", str(tmp_path / "big.npz")], "`images` must be uint8 N x 28 x 28"),
             ([str(bigan_run), "--input", str(tmp_path / "folder")], "x.png is 32x32; this run takes 28x28 images"),
             ([str(bigan_run), "--input", str(tmp_path / "big.png")], "--input must be an .npz file or a directory"),
             ([str(bigan_run), "--input", str(tmp_path / "big.npz"), "--out", "x.json"], "--out must name an .npz"),
             ([str(tmp_path / "nowhere"), "--input", str(tmp_path / "big.npz")], "no such file or directory")]
    for argv, message in cases:
        out = [] if "--out" in argv else ["--out", str(tmp_path / "z.npz")]
        assert main(["encode", *argv, *out]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gankit: error: ") and len(err.strip().splitlines()) == 1, err
        assert re.search(message, err), err
    assert not (tmp_path / "z.npz").exists()


def test_sample_and_the_config_command_take_a_bigan_run(bigan_run, tmp_path, capsys):
    assert main(["sample", str(bigan_run), "--num", "4", "--out", str(tmp_path / "s.npz")]) == 0
    assert np.load(tmp_path / "s.npz")["images"].shape == (4, 28, 28, 1)
    assert main(["config", "--model", "dcgan"]) == 0
    out = capsys.readouterr().out
    assert "model.encoder: {name: dcgan" in out and "model.discriminator (bigan): {name: dcgan" in out


def test_two_processes_train_and_resume_exactly(tmp_path):
    from test_distributed import _run_workers

    cfg = make_cfg(BIGAN, "train.steps=4", "checkpoint.every=2", "log.every=2", "log.sample_every=0")
    _run_workers(tmp_path, "train", cfg, tmp_path / "run")
    _run_workers(tmp_path, "resume", make_cfg(cfg, "train.steps=6"), tmp_path / "run")
    _run_workers(tmp_path, "train", make_cfg(cfg, "train.steps=6"), tmp_path / "straight")
    resumed, meta = load_checkpoint(CheckpointDir(tmp_path / "run" / "checkpoints").latest())
    expected, _ = load_checkpoint(CheckpointDir(tmp_path / "straight" / "checkpoints").latest())
    assert meta["step"] == 6 and meta["world_size"] == 2 and meta["images_seen"] == 6 * 2 * 32
    for key in ("g", "d", "e", "opt_g", "opt_d", "rng"):
        assert_states_equal(resumed[key], expected[key], key)
