"""gankit.sampling: rebuilding G from a checkpoint alone, reproducible latents, sample files."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_cfg
from gankit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gankit.models import build_generator
from gankit.sampling import generate, latents, load_generator, write_samples
from gankit.train import train


def test_latents_depend_only_on_seed_and_size():
    a = latents(5, 3, seed=1)
    assert a.shape == (5, 3)
    assert torch.equal(a, latents(5, 3, seed=1))
    assert not torch.equal(a, latents(5, 3, seed=2))
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(a, latents(5, 3, seed=1))


def test_generate_uses_eval_mode_and_restores_training():
    g = build_generator({"name": "mlp", "widths": [8], "batchnorm": True, "dropout": 0.5}, 4, (2,))
    g.train()
    z = latents(10, 4, seed=0)
    out = generate(g, z, batch_size=3)  # batched, eval mode: deterministic despite dropout
    assert out.shape == (10, 2) and g.training
    assert torch.equal(out, generate(g, z, batch_size=3))
    # another batch size may take another matmul kernel (last-bit differences on some CPUs); dropout
    # or batch statistics would differ by far more
    assert torch.allclose(out, generate(g, z, batch_size=10), atol=1e-6)


def test_load_generator_from_run_dir_and_file(trained_run):
    from_dir = load_generator(trained_run.run_dir)
    from_file = load_generator(trained_run.checkpoint)
    assert from_dir.step == from_file.step == 30
    assert from_dir.is_ema and from_dir.is_image and from_dir.data_shape == (1, 28, 28)
    assert from_dir.latent_dim == 16 and not from_dir.net.training
    state, _ = load_checkpoint(trained_run.checkpoint)
    for name, tensor in from_dir.net.state_dict().items():
        assert torch.equal(tensor, state["g_ema"][name])
    assert torch.equal(from_dir.sample(6, seed=3), from_file.sample(6, seed=3))


def test_same_seed_same_samples_different_seed_different(trained_run):
    gen = load_generator(trained_run.run_dir)
    a = gen.sample(8, seed=0)
    assert a.shape == (8, 1, 28, 28) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, gen.sample(8, seed=0))
    # another batch size gives the same latents; convolutions may round differently per batch size
    assert torch.allclose(a, gen.sample(8, seed=0, batch_size=3), atol=1e-5)
    assert not torch.equal(a, gen.sample(8, seed=1))
    u8 = gen.to_uint8(a)
    assert u8.dtype == torch.uint8 and u8.shape == a.shape


def test_no_ema_uses_the_raw_generator(trained_run):
    raw = load_generator(trained_run.run_dir, ema=False)
    ema = load_generator(trained_run.run_dir)
    assert not raw.is_ema
    state, _ = load_checkpoint(trained_run.checkpoint)
    for name, tensor in raw.net.state_dict().items():
        assert torch.equal(tensor, state["g"][name])
    assert not torch.equal(raw.sample(4, seed=0), ema.sample(4, seed=0))


def test_run_without_ema_samples_the_raw_generator(tmp_path, ring_cfg):
    train(ring_cfg, tmp_path / "run")
    gen = load_generator(tmp_path / "run")  # ema=True, but the run kept no EMA
    assert not gen.is_ema
    state, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000010.safetensors")
    assert state["g_ema"] is None
    for name, tensor in gen.net.state_dict().items():
        assert torch.equal(tensor, state["g"][name])


def test_write_png_grid(tmp_path, trained_run):
    gen = load_generator(trained_run.run_dir)
    out = write_samples(gen, 10, tmp_path / "grid.png", seed=0)
    assert out == tmp_path / "grid.png"
    with Image.open(out) as img:
        # 10 samples -> 4 per row, 3 rows; 28 px plus 2 px padding
        assert img.size == (4 * 30 + 2, 3 * 30 + 2)
        arr = np.asarray(img.convert("RGB"))
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()  # gray digits
    assert (arr[:2] == 0).all()  # padding is black (-1 in the model range)
    with Image.open(write_samples(gen, 6, tmp_path / "wide.png", nrow=6)) as img:
        assert img.size == (6 * 30 + 2, 32)


def test_write_npz_images(tmp_path, trained_run):
    gen = load_generator(trained_run.run_dir)
    out = write_samples(gen, 5, tmp_path / "s.npz", seed=4)
    with np.load(out) as npz:
        assert list(npz.keys()) == ["images"]
        images = npz["images"]
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.uint8
    expected = gen.to_uint8(gen.sample(5, seed=4)).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(images, expected)


def test_write_png_directory(tmp_path, trained_run):
    gen = load_generator(trained_run.run_dir)
    out = write_samples(gen, 7, str(tmp_path / "pngs") + "/", seed=2)
    files = sorted(out.iterdir())
    assert [p.name for p in files] == [f"{i:06d}.png" for i in range(7)]
    expected = gen.to_uint8(gen.sample(7, seed=2))
    with Image.open(files[3]) as img:
        assert img.size == (28, 28)
        assert np.array_equal(np.asarray(img), expected[3, 0].numpy())
    # an existing directory works without the trailing slash
    again = write_samples(gen, 2, tmp_path / "pngs", seed=9)
    assert again == tmp_path / "pngs" and len(list(again.iterdir())) == 7


def test_write_points(tmp_path, ring_cfg):
    train(ring_cfg, tmp_path / "run")
    gen = load_generator(tmp_path / "run")
    out = write_samples(gen, 30, tmp_path / "p.npz", seed=0)
    with np.load(out) as npz:
        assert list(npz.keys()) == ["points"]
        points = npz["points"]
    assert points.shape == (30, 2) and points.dtype == np.float32
    assert np.array_equal(points, gen.sample(30, seed=0).numpy())
    plot = write_samples(gen, 30, tmp_path / "p.png")
    with Image.open(plot) as img:
        assert img.format == "PNG"
    with pytest.raises(ValueError, match="needs image data"):
        write_samples(gen, 3, str(tmp_path / "dir") + "/")


def test_unknown_suffix_is_refused(tmp_path, trained_run):
    gen = load_generator(trained_run.run_dir)
    for name in ("s.jpg", "s.npy", "samples"):
        with pytest.raises(ValueError, match=r"\.png, \.npz or /"):
            write_samples(gen, 2, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_load_generator_errors(tmp_path, trained_run):
    with pytest.raises(CheckpointError, match="no such file"):
        load_generator(tmp_path / "missing")
    # a checkpoint whose weights do not fit its config is refused with the mismatching names
    state, meta = load_checkpoint(trained_run.checkpoint)
    meta["config"]["model"]["generator"]["width"] = 4
    save_checkpoint(tmp_path / "bad.safetensors", state, meta)
    with pytest.raises(CheckpointError, match="does not fit the configured model.*shape mismatch"):
        load_generator(tmp_path / "bad.safetensors")


def test_png_bytes_roundtrip_rgb():
    from gankit.sampling import png_bytes

    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(png_bytes(arr))) as img:
        assert img.mode == "RGB" and np.array_equal(np.asarray(img), arr)


def test_rgb_run_samples(tmp_path, tiny_cfg):
    cfg = make_cfg(tiny_cfg, "data.channels=3", "data.resolution=32", "train.steps=1", "train.ema_decay=0")
    train(cfg, tmp_path / "run")
    gen = load_generator(tmp_path / "run")
    out = write_samples(gen, 3, tmp_path / "s.npz")
    with np.load(out) as npz:
        assert npz["images"].shape == (3, 32, 32, 3)
    with Image.open(write_samples(gen, 4, tmp_path / "g.png")) as img:
        assert img.mode == "RGB" and img.size == (2 * 34 + 2, 2 * 34 + 2)
