"""Latent tools: truncation (StyleGAN's w_avg and truncated z), interpolation walks (GIF / PNG strip)
and StyleGAN style mixing, from Python and from the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.cli import main
from gankit.sampling import (interpolation_frames, load_generator, slerp, style_mix_grid, truncate_latents,
                             walk_latents)
from gankit.train import train

Z = 8
LOG = {"every": 1, "sample_every": 0, "grid": 2, "progress": False, "tensorboard": False, "plot": False}
DATA = {"name": "mnist10k", "limit": 32, "resolution": 16}
TRAIN = {"device": "cpu", "seed": 0, "batch_size": 8, "steps": 1, "ema_decay": 0.5}
RUNS = {
    "stylegan": {"model": {"latent_dim": Z, "init": "default",
                           "generator": {"name": "stylegan", "width": 4, "max_width": 8, "mapping_layers": 2},
                           "discriminator": {"name": "stylegan", "width": 4, "max_width": 8}}},
    "biggan": {"model": {"latent_dim": Z, "conditional": True,
                         "generator": {"name": "biggan", "width": 4, "max_width": 8, "shared_dim": 4},
                         "discriminator": {"name": "biggan", "width": 4, "max_width": 8}},
               "objective": {"name": "hinge"},
               "train": {**TRAIN, "ema_decay": 0.0}},  # no EMA: its BatchNorm recalibration costs seconds
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One training step of a tiny StyleGAN (with EMA) and a tiny conditional BigGAN: checkpoints to load."""
    root = tmp_path_factory.mktemp("latent")
    out = {}
    for name, spec in RUNS.items():
        cfg = {"data": DATA, "train": TRAIN, "log": LOG, "checkpoint": {"every": 100}, **spec}
        out[name] = train(cfg, root / name).run_dir
    return out


# ---------------------------------------------------------------------------------------------
# Truncation


def test_truncate_latents_is_a_truncated_normal():
    z = torch.randn(20_000, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(truncate_latents(z, 0.0), torch.zeros_like(z))
    t1 = truncate_latents(z, 1.0)
    assert float(t1.abs().max()) < 1.0
    assert float(t1.std()) == pytest.approx(0.5396, abs=0.01)  # the std of N(0, 1) truncated to (-1, 1)
    # monotone in z: one seed gives related images at every threshold
    assert bool((t1.gather(0, z.argsort(0)).diff(dim=0) >= 0).all())
    torch.testing.assert_close(truncate_latents(z, 50.0), z)  # a far threshold changes nothing
    with pytest.raises(ValueError, match=">= 0"):
        truncate_latents(z, -1.0)


def test_stylegan_psi_zero_is_the_mean_image(runs):
    gen = load_generator(runs["stylegan"])
    assert float(gen.net.w_avg.abs().sum()) > 0  # tracked in training
    mean = gen.sample(6, seed=0, truncation=0.0)
    # every z gives the image of w_avg (fixed noise inputs), up to float rounding across the batch
    torch.testing.assert_close(mean, mean[:1].expand_as(mean), rtol=0, atol=1e-5)
    w_avg = gen.net.w_avg.expand(1, gen.net.num_ws, -1)
    with torch.no_grad():
        torch.testing.assert_close(mean[:1], gen.net.synthesis(w_avg))
    assert torch.equal(gen.sample(4, seed=0, truncation=1.0), gen.sample(4, seed=0))  # psi = 1: untouched
    half = gen.sample(4, seed=0, truncation=0.5)
    assert not torch.allclose(half, gen.sample(4, seed=0)) and not torch.allclose(half, mean[:4])


def test_biggan_threshold_zero_is_one_image_per_class(runs):
    gen = load_generator(runs["biggan"])
    same_class = gen.sample(6, seed=0, labels=2, truncation=0.0)
    # z = 0 for every seed: one image, up to float rounding across the batch
    torch.testing.assert_close(same_class, same_class[:1].expand_as(same_class), rtol=0, atol=1e-5)
    assert not torch.allclose(same_class[0], gen.sample(1, seed=0, labels=3, truncation=0.0)[0])
    truncated = gen.sample(6, seed=0, labels=2, truncation=1.0)
    assert truncated.shape == (6, 1, 16, 16) and not torch.allclose(truncated[0], truncated[1])


def test_sample_cli_truncation(runs, tmp_path):
    out = tmp_path / "t.png"
    assert main(["sample", str(runs["stylegan"]), "--num", "4", "--out", str(out), "--truncation", "0.7", "--scale", "1"]) == 0
    assert Image.open(out).size == (2 * 18 + 2, 2 * 18 + 2)
    with pytest.raises(SystemExit):
        main(["sample", str(runs["stylegan"]), "--out", str(out), "--truncation", "-1"])


# ---------------------------------------------------------------------------------------------
# Interpolation


def test_walk_latents_and_slerp():
    a, b, c = torch.eye(3)
    walk = walk_latents(torch.stack([a, b, c]), 5)
    assert walk.shape == (9, 3)  # 5 per pair, the shared endpoint once
    assert torch.equal(walk[0], a) and torch.equal(walk[4], b) and torch.equal(walk[8], c)
    torch.testing.assert_close(walk[2], (a + b) / 2)
    arc = walk_latents(torch.stack([a, b]), 5, spherical=True)
    torch.testing.assert_close(arc.norm(dim=1), torch.ones(5))  # on the great circle between unit vectors
    torch.testing.assert_close(arc[[0, -1]], torch.stack([a, b]))
    torch.testing.assert_close(slerp(a[None], a[None], torch.tensor([[0.5]])), a[None])  # parallel: lerp
    with pytest.raises(ValueError, match="at least 2"):
        walk_latents(a[None], 5)


def test_interpolation_starts_and_ends_at_the_seeds_samples(runs):
    gen = load_generator(runs["stylegan"])
    frames = interpolation_frames(gen, [3, 5], 4)
    assert frames.shape == (4, 1, 16, 16)
    torch.testing.assert_close(frames[0], gen.sample(1, seed=3)[0])
    torch.testing.assert_close(frames[-1], gen.sample(1, seed=5)[0])


@pytest.mark.parametrize("run", ["stylegan", "biggan"])
def test_interpolate_cli_writes_a_gif_with_n_frames(runs, tmp_path, run, capsys):
    gif = tmp_path / "walk.gif"
    assert main(["interpolate", str(runs[run]), "--steps", "5", "--out", str(gif), "--seeds", "1", "2", "--scale", "1"]) == 0
    with Image.open(gif) as im:
        assert im.n_frames == 5 and im.size == (16, 16)
        frames = []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("L")))
    assert not np.array_equal(frames[0], frames[-1])
    assert "5-frame walk" in capsys.readouterr().out
    strip = tmp_path / "strip.png"
    assert main(["interpolate", str(runs[run]), "--steps", "4", "--out", str(strip), "--seeds", "0-2",
                 "--slerp", "--truncation", "0.8", "--scale", "1"]) == 0
    assert Image.open(strip).size == (7 * 18 + 2, 18 + 2 + 14)  # 2 * (4 - 1) + 1 frames, then seed labels


def test_interpolate_cli_errors(runs, tmp_path, capsys):
    assert main(["interpolate", str(runs["stylegan"]), "--out", str(tmp_path / "w.mp4")]) == 2
    assert ".gif" in capsys.readouterr().err
    assert main(["interpolate", str(runs["stylegan"]), "--out", str(tmp_path / "w.gif"), "--seeds", "4"]) == 2
    assert "at least two seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["interpolate", str(runs["stylegan"]), "--out", str(tmp_path / "w.gif"), "--seeds", "a-b"])


# ---------------------------------------------------------------------------------------------
# Style mixing


def test_style_mix_grid_equals_synthesis_of_the_mixed_styles(runs):
    g = load_generator(runs["stylegan"]).net
    torch.manual_seed(0)
    row_z, col_z = torch.randn(2, Z), torch.randn(3, Z)
    k = 4
    grid = style_mix_grid(g, row_z, col_z, coarse=k, blank=-1.0)
    assert grid.shape == (3 * 4, 1, 16, 16)
    grid = grid.view(3, 4, 1, 16, 16)
    with torch.no_grad():
        ws_r, ws_c = g.mapping(row_z), g.mapping(col_z)
        mixed = [torch.cat([ws_r[i, :k], ws_c[j, k:]]) for i in range(2) for j in range(3)]
        direct = g.synthesis(torch.stack(mixed)).view(2, 3, 1, 16, 16)
        assert torch.equal(grid[1:, 1:], direct)  # coarse styles from the row, the rest from the column
        torch.testing.assert_close(grid[0, 1:], g.synthesis(ws_c))  # top row: the column latents
        torch.testing.assert_close(grid[1:, 0], g.synthesis(ws_r))  # left column: the row latents
    assert torch.equal(grid[0, 0], torch.full((1, 16, 16), -1.0))
    # all styles from the rows reproduces the rows, none reproduces the columns
    every = style_mix_grid(g, row_z, col_z, coarse=g.num_ws).view(3, 4, 1, 16, 16)
    torch.testing.assert_close(every[1:, 1:], every[1:, :1].expand(-1, 3, -1, -1, -1))
    none = style_mix_grid(g, row_z, col_z, coarse=0).view(3, 4, 1, 16, 16)
    torch.testing.assert_close(none[1:, 1:], none[:1, 1:].expand(2, -1, -1, -1, -1))
    with pytest.raises(ValueError, match="coarse must be"):
        style_mix_grid(g, row_z, col_z, coarse=g.num_ws + 1)


def test_style_mix_cli(runs, tmp_path, capsys):
    out = tmp_path / "mix.png"
    assert main(["style-mix", str(runs["stylegan"]), "--rows", "1-3", "--cols", "4", "5", "--out", str(out), "--scale", "1"]) == 0
    assert Image.open(out).size == (3 * 18 + 2, 4 * 18 + 2)  # (cols + 1) x (rows + 1) cells
    assert "3 x 2 style-mixing grid" in capsys.readouterr().out


def test_style_mix_runs_g_in_batches(runs, monkeypatch):
    """Issue 27, defect 12: every cell went through G at once (--rows 0-99 --cols 0-99: a traceback at 3 GB)."""
    g = load_generator(runs["stylegan"]).net
    row_z, col_z = torch.randn(5, Z, generator=torch.Generator().manual_seed(1)), torch.randn(7, Z)
    whole = style_mix_grid(g, row_z, col_z, batch_size=1000)
    sizes = []
    synthesis = g.synthesis
    monkeypatch.setattr(g, "synthesis", lambda ws: sizes.append(len(ws)) or synthesis(ws))
    batched = style_mix_grid(g, row_z, col_z, batch_size=3)
    assert max(sizes) == 3 and sum(sizes) == 5 + 7 + 5 * 7
    torch.testing.assert_close(batched, whole)


def test_style_mix_refuses_what_sample_refuses(runs, tmp_path, capsys, monkeypatch):
    """Issue 27, defects 12 and 24: no memory guard (sample's now guards it), and psi 2 extrapolated where
    sample refuses psi > 1."""
    from gankit.data import source

    out = tmp_path / "mix.png"
    assert main(["style-mix", str(runs["stylegan"]), "--rows", "1", "--cols", "2", "--out", str(out),
                 "--truncation", "2", "--no-ema"]) == 2
    assert capsys.readouterr().err == "gankit: error: --truncation: StyleGAN's psi must be in [0, 1] (1 = off), got 2\n"
    monkeypatch.setattr(source, "physical_memory", lambda: 8 << 20)
    assert main(["style-mix", str(runs["stylegan"]), "--rows", "0-99", "--cols", "0-99", "--out", str(out),
                 "--no-ema"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gankit: error: 10,201 style-mixing images need") and err.endswith("ask for fewer\n")
    assert not out.exists()


def test_style_mix_needs_a_stylegan(runs, tmp_path, capsys):
    out = tmp_path / "mix.png"
    assert main(["style-mix", str(runs["biggan"]), "--rows", "1", "--cols", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gankit: error: style mixing needs") and "stylegan" in err and not out.exists()


# ---------------------------------------------------------------------------------------------
# Presets


@pytest.mark.parametrize("preset, shape, num_classes", [
    ("mnist_stylegan", (1, 32, 32), None), ("mnist_biggan", (1, 32, 32), 10),
    ("cifar10_stylegan", (3, 32, 32), None), ("cifar10_biggan", (3, 32, 32), 10),
    ("folder_stylegan_256", (3, 256, 256), None)])
def test_presets_load_and_build(preset, shape, num_classes):
    from pathlib import Path

    from gankit.config import load
    from gankit.models import build_models

    cfg = load(Path(__file__).resolve().parents[1] / "configs" / f"{preset}.yaml")
    assert cfg.model.conditional == (num_classes is not None)
    cfg.model.init = "default"  # the architecture is under test; re-initialising 4M weights costs seconds
    g, d = build_models(cfg.model, shape, num_classes)
    if preset.startswith("mnist"):  # the CPU presets: one forward pass
        y = torch.tensor([1, 7]) if num_classes else None
        with torch.no_grad():
            assert d(g(torch.randn(2, cfg.model.latent_dim), y), y).shape == (2,)
