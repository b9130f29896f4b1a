"""gankit.data: the bundled digits, torchvision datasets read offline from files in their real on-disk
formats, image folders, the 2D mixtures, pixel ranges and the resumable BatchStream."""
from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gankit.config import ConfigError, DataConfig
from gankit.data import (BatchStream, DataError, LazySource, TensorSource, build_dataset, to_model_range,
                         to_uint8)
from gankit.data import folder as folder_module
from gankit.data.source import fit_images
from gankit.data.toy2d import grid_modes, ring_modes

CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# mnist10k (bundled)


def test_mnist10k_loads_all_digits_with_labels():
    src = build_dataset(DataConfig(name="mnist10k"))
    assert isinstance(src, TensorSource) and src.is_image
    assert src.data.shape == (10000, 1, 28, 28) and src.data.dtype == torch.uint8
    assert src.labels.shape == (10000,) and src.labels.dtype == torch.long
    assert src.num_classes == 10
    assert sorted(src.labels.unique().tolist()) == list(range(10))
    assert src.data.max() == 255 and src.data.min() == 0
    # the file is sorted by label; the loader shuffles it once, so a prefix holds every class
    assert len(src.labels[:100].unique()) == 10


def test_mnist10k_limit_resolution_channels():
    src = build_dataset(DataConfig(name="mnist10k", limit=50, resolution=32, channels=3))
    assert src.data.shape == (50, 3, 32, 32) and src.data.dtype == torch.uint8
    assert src.labels.shape == (50,)
    assert torch.equal(src.data[:, 0], src.data[:, 1]) and torch.equal(src.data[:, 0], src.data[:, 2])
    full = build_dataset(DataConfig(name="mnist10k", limit=50))
    assert torch.equal(full.labels, src.labels)  # the same first 50 digits
    small = build_dataset(DataConfig(name="mnist10k", limit=8, resolution=14))
    assert small.shape == (1, 14, 14)


@pytest.mark.parametrize("normalize, lo, hi", [("symmetric", -1.0, 1.0), ("unit", 0.0, 1.0)])
def test_batches_are_in_the_model_range(normalize, lo, hi):
    src = build_dataset(DataConfig(name="mnist10k", limit=64, normalize=normalize))
    x, y = src.batch(torch.arange(64))
    assert x.dtype == torch.float32 and x.shape == (64, 1, 28, 28)
    assert x.min().item() == lo and x.max().item() == hi
    assert torch.equal(y, src.labels)


@pytest.mark.parametrize("normalize", ["symmetric", "unit"])
def test_uint8_roundtrip_is_exact(normalize):
    values = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(to_model_range(values, normalize), normalize), values)
    assert to_uint8(torch.tensor([-5.0, 5.0]), normalize).tolist() == [0, 255]  # clamped


def test_fit_images_center_crops_non_square_and_converts_channels():
    images = torch.zeros(2, 3, 10, 30, dtype=torch.uint8)
    images[:, :, :, 10:20] = 200  # only the central square is bright
    out = fit_images(images, None, None)
    assert out.shape == (2, 3, 10, 10) and (out == 200).all()
    gray = fit_images(images, 5, 1)
    assert gray.shape == (2, 1, 5, 5) and (gray == 200).all()
    tall = torch.zeros(1, 1, 9, 3, dtype=torch.uint8)
    assert fit_images(tall, None, 3).shape == (1, 3, 3, 3)


# ---------------------------------------------------------------------------------------------
# torchvision datasets, offline, from files in their real formats


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file as distributed by LeCun: big-endian magic (0x08 = uint8, ndim) and sizes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    magic = 0x0800 + array.ndim  # 2051 for images (3 dims), 2049 for labels (1 dim)
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist_files(root: Path, folder: str, n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    raw = root / folder / "raw"
    _write_idx(raw / "train-images-idx3-ubyte", images)
    _write_idx(raw / "train-labels-idx1-ubyte", labels)
    # torchvision's MNIST._check_exists requires the test split to be present too
    _write_idx(raw / "t10k-images-idx3-ubyte", images[:2])
    _write_idx(raw / "t10k-labels-idx1-ubyte", labels[:2])
    return images, labels


def test_idx_writer_matches_the_spec(tmp_path):
    _write_idx(tmp_path / "x", np.zeros((3, 28, 28), np.uint8))
    _write_idx(tmp_path / "y", np.zeros(3, np.uint8))
    assert struct.unpack(">IIII", (tmp_path / "x").read_bytes()[:16]) == (2051, 3, 28, 28)
    assert struct.unpack(">II", (tmp_path / "y").read_bytes()[:8]) == (2049, 3)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_style_datasets_read_idx_files(tmp_path, name, folder):
    images, labels = _write_mnist_files(tmp_path, folder)
    src = build_dataset(DataConfig(name=name, root=str(tmp_path)))
    assert src.data.shape == (12, 1, 28, 28) and src.data.dtype == torch.uint8
    assert torch.equal(src.data[:, 0], torch.from_numpy(images))
    assert src.labels.tolist() == labels.tolist()
    fitted = build_dataset(DataConfig(name=name, root=str(tmp_path), resolution=32, channels=3, limit=5))
    assert fitted.data.shape == (5, 3, 32, 32)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"),
                                          ("cifar10", "cifar-10-batches-py")])
def test_missing_files_without_download_name_the_directory(tmp_path, name, folder):
    with pytest.raises(DataError) as err:
        build_dataset(DataConfig(name=name, root=str(tmp_path / "nowhere"), download=False))
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / folder) in msg
    assert "data.download" in msg


def test_mnist_error_lists_every_file_torchvision_needs(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    _write_idx(raw / "train-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    _write_idx(raw / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(DataError) as err:  # the test split is missing
        build_dataset(DataConfig(name="mnist", root=str(tmp_path)))
    assert "t10k-images-idx3-ubyte" in str(err.value)


def test_garbage_idx_file_is_a_data_error(tmp_path):
    _write_mnist_files(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"not an idx file at all" * 10)
    with pytest.raises(DataError, match="MNIST"):
        build_dataset(DataConfig(name="mnist", root=str(tmp_path)))


def _write_cifar_files(root: Path, per_batch: int = 3) -> tuple[np.ndarray, list[int]]:
    """cifar-10-batches-py as in the official archive: pickled dicts, data (N, 3072) uint8 in CHW order."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    all_data, all_labels = [], []
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i * per_batch + j) % 10 for j in range(per_batch)]
        entry = {"batch_label": f"batch {i + 1} of 5", "labels": labels, "data": data,
                 "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)]}
        with open(base / name, "wb") as fh:
            pickle.dump(entry, fh, protocol=2)
        if name != "test_batch":
            all_data.append(data)
            all_labels += labels
    meta = {"num_cases_per_batch": per_batch, "num_vis": 3072,
            "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                            "ship", "truck"]}
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump(meta, fh, protocol=2)
    return np.concatenate(all_data), all_labels


def test_cifar10_reads_pickled_batches(tmp_path, monkeypatch):
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as tv_cifar

    data, labels = _write_cifar_files(tmp_path)
    # Our hand-written files cannot have the md5 sums of the real archive, which torchvision checks
    # (CIFAR10._check_integrity for the batches, cifar.check_integrity for batches.meta); accept any
    # existing file instead. Everything else (unpickling, reshaping) runs as with the real files.
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    src = build_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert src.data.shape == (15, 3, 32, 32) and src.data.dtype == torch.uint8
    assert torch.equal(src.data.reshape(15, 3072), torch.from_numpy(data))
    assert src.labels.tolist() == labels
    gray = build_dataset(DataConfig(name="cifar10", root=str(tmp_path), channels=1, resolution=16, limit=4))
    assert gray.data.shape == (4, 1, 16, 16)


def test_cifar10_checksum_mismatch_is_a_data_error(tmp_path):
    _write_cifar_files(tmp_path)  # the real md5 check runs and fails on our files
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        build_dataset(DataConfig(name="cifar10", root=str(tmp_path)))


# ---------------------------------------------------------------------------------------------
# folder


def _save(path: Path, array: np.ndarray, **kwargs) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, 20:40] = (255, 0, 0)  # the central square is pure red, the sides black
    _save(root / "a_wide.png", wide)
    _save(root / "nested" / "deeper" / "b_gray.png", np.full((33, 33), 100, np.uint8))
    _save(root / "nested" / "c_photo.jpg", np.full((40, 24, 3), (0, 0, 255), np.uint8), quality=95)
    (root / "nested" / "notes.txt").write_text("not an image")
    return root


def test_folder_rgb_resized_and_center_cropped(image_folder):
    src = build_dataset(DataConfig(name="folder", root=str(image_folder), resolution=16))
    assert isinstance(src, TensorSource)
    assert src.data.shape == (3, 3, 16, 16) and src.data.dtype == torch.uint8
    files = folder_module.list_images(image_folder)  # sorted by path, recursive, images only
    assert [p.name for p in files] == ["a_wide.png", "c_photo.jpg", "b_gray.png"]
    wide, photo, gray = src.data
    assert (wide[0] == 255).all() and (wide[1:] == 0).all()  # the crop kept only the red center
    assert (gray == 100).all()  # grayscale files become RGB with equal channels
    assert (photo[2].float().mean() > 240) and (photo[:2].float().mean() < 15)  # JPEG is lossy


def test_folder_grayscale_and_default_resolution(image_folder):
    src = build_dataset(DataConfig(name="folder", root=str(image_folder), channels=1))
    assert src.data.shape == (3, 1, 24, 24)  # unset data.resolution: the median shorter side (20, 24, 33)
    red_as_gray = round(255 * 299 / 1000)  # ITU-R 601-2 luma, as PIL's convert("L")
    assert abs(int(src.data[0].float().mean().round()) - red_as_gray) <= 1
    assert (src.data[2] == 100).all()


def test_folder_infers_grayscale_and_a_small_side(tmp_path):
    root = tmp_path / "digits"
    for i in range(4):  # 28 px grayscale stored as RGB (R = G = B), as many exported datasets are
        _save(root / f"{i}.png", np.full((28, 28, 3), 40 * i, np.uint8))
    _save(root / "big.png", np.full((100, 120), 7, np.uint8))
    cfg = DataConfig(name="folder", root=str(root))
    shape = folder_module.folder_shape(cfg)
    assert (shape.resolution, shape.channels, shape.median_side) == (28, 1, 28)  # digits keep their own 28 px
    assert build_dataset(cfg).data.shape == (5, 1, 28, 28)
    line = folder_module.describe_folder(cfg)
    assert "5 images" in line and "28x28 grayscale" in line and "the images' own side" in line
    assert "only 5 images" in line
    _save(root / "colour.png", np.full((64, 64, 3), (200, 10, 10), np.uint8))
    assert folder_module.folder_shape(cfg).channels == 3
    fixed = DataConfig(name="folder", root=str(root), resolution=32, channels=3)
    assert folder_module.folder_shape(fixed).median_side is None
    assert "data.resolution / data.channels)" in folder_module.describe_folder(fixed)


@pytest.mark.parametrize("sides, trained", [([30, 30, 31], 28), ([36, 36], 32), ([50, 52], 48), ([500, 640], 64),
                                            ([17, 17], 16), ([5, 5], 8)])
def test_folder_side_is_the_nearest_trainable_one(tmp_path, sides, trained):
    for i, side in enumerate(sides):  # odd sizes: the nearest side a conv model builds, capped on a CPU budget
        _save(tmp_path / f"{i}.png", np.full((side, side + 3), 9, np.uint8))
    shape = folder_module.folder_shape(DataConfig(name="folder", root=str(tmp_path)))
    assert shape.resolution == trained
    line = folder_module.describe_folder(DataConfig(name="folder", root=str(tmp_path)))
    assert f"{trained}x{trained}" in line and f"median side {shape.median_side} px" in line
    assert ("at most 64 px" in line) == (shape.median_side > 64)


def test_folder_limit_and_normalize(image_folder):
    src = build_dataset(DataConfig(name="folder", root=str(image_folder), resolution=8, limit=2,
                                   normalize="unit"))
    assert len(src) == 2
    x, y = src.batch(torch.tensor([0, 1]))
    assert y is None and x.min() >= 0 and x.max() == 1.0


def test_folder_lazy_source_matches_preloaded(image_folder, monkeypatch):
    cfg = DataConfig(name="folder", root=str(image_folder), resolution=8)
    eager = build_dataset(cfg)
    monkeypatch.setattr(folder_module, "PRELOAD_BYTES", 0)  # force decoding on the fly
    lazy = build_dataset(cfg)
    assert isinstance(lazy, LazySource) and lazy.shape == (3, 8, 8) and len(lazy) == 3
    assert torch.equal(lazy.dataset[2], eager.batch(torch.tensor([2]))[0][0])
    a = BatchStream(eager, 2, seed=3, device=CPU)
    b = BatchStream(lazy, 2, seed=3, device=CPU)
    for _ in range(4):  # two epochs of one batch each
        xa, _ = a.next()
        xb, yb = b.next()
        assert yb is None and torch.equal(xa, xb)


def test_folder_unreadable_image_names_the_path(image_folder):
    bad = image_folder / "nested" / "broken.png"
    bad.write_bytes(b"\x00garbage, not a PNG" * 20)
    with pytest.raises(DataError) as err:
        build_dataset(DataConfig(name="folder", root=str(image_folder), resolution=8))
    assert str(bad) in str(err.value)


def test_folder_truncated_image_names_the_path(image_folder):
    good = image_folder / "a_wide.png"
    good.write_bytes(good.read_bytes()[:60])
    with pytest.raises(DataError, match="a_wide.png"):
        build_dataset(DataConfig(name="folder", root=str(image_folder), resolution=8))


def test_folder_empty_or_missing(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.md").write_text("no images here")
    with pytest.raises(DataError, match="no images"):
        build_dataset(DataConfig(name="folder", root=str(empty)))
    with pytest.raises(DataError, match="not a directory"):
        build_dataset(DataConfig(name="folder", root=str(tmp_path / "missing")))


# ---------------------------------------------------------------------------------------------
# 2D mixtures


def _nearest(points: torch.Tensor, modes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dist = torch.cdist(points, modes)
    return dist.min(1)


def test_ring_points_lie_near_eight_modes_of_radius_one():
    modes = ring_modes()
    assert modes.shape == (8, 2)
    assert torch.allclose(modes.norm(dim=1), torch.ones(8), atol=1e-6)
    src = build_dataset(DataConfig(name="ring", num_points=2000))
    assert src.data.shape == (2000, 2) and src.data.dtype == torch.float32 and not src.is_image
    assert src.num_classes == 8
    dist, which = _nearest(src.data, modes)
    assert dist.max() < 0.06  # std 0.01
    assert torch.equal(which, src.labels)
    assert len(which.unique()) == 8
    x, _ = src.batch(torch.arange(5))
    assert torch.equal(x, src.data[:5])  # points are not rescaled


def test_grid_points_lie_near_25_modes():
    modes = grid_modes()
    assert modes.shape == (25, 2)
    assert sorted(modes[:, 0].unique().tolist()) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    src = build_dataset(DataConfig(name="grid", num_points=3000))
    assert src.data.shape == (3000, 2) and src.num_classes == 25
    dist, which = _nearest(src.data, modes)
    assert dist.max() < 0.3  # std 0.05
    assert torch.equal(which, src.labels) and len(which.unique()) == 25


def test_mixtures_are_fixed_training_sets():
    a = build_dataset(DataConfig(name="ring", num_points=100))
    b = build_dataset(DataConfig(name="ring", num_points=100))
    assert torch.equal(a.data, b.data)


# ---------------------------------------------------------------------------------------------
# BatchStream


def _indexed(n: int) -> TensorSource:
    """Points whose single coordinate is their index, so a batch shows which samples it holds."""
    return TensorSource(torch.arange(n, dtype=torch.float32).unsqueeze(1))


def _ids(stream: BatchStream) -> list[int]:
    x, _ = stream.next()
    return x[:, 0].long().tolist()


def test_stream_order_is_deterministic_for_a_seed():
    a, b, c = (BatchStream(_indexed(20), 4, seed=s, device=CPU) for s in (7, 7, 8))
    seq_a = [_ids(a) for _ in range(12)]
    assert seq_a == [_ids(b) for _ in range(12)]
    assert seq_a != [_ids(c) for _ in range(12)]


def test_stream_epochs_roll_over_with_a_new_permutation_and_drop_last():
    stream = BatchStream(_indexed(10), 3, seed=0, device=CPU)
    assert stream.batches_per_epoch == 3  # the 10th sample is dropped each epoch
    epoch0 = [_ids(stream) for _ in range(3)]
    assert stream.epoch == 0 and stream.index == 3
    epoch1 = [_ids(stream) for _ in range(3)]
    assert stream.epoch == 1
    for epoch in (epoch0, epoch1):
        flat = sum(epoch, [])
        assert all(len(b) == 3 for b in epoch)
        assert len(set(flat)) == 9 and set(flat) <= set(range(10))
    assert epoch0 != epoch1


def test_stream_labels_follow_their_samples():
    src = TensorSource(torch.arange(12, dtype=torch.float32).unsqueeze(1), torch.arange(12) * 10)
    stream = BatchStream(src, 4, seed=1, device=CPU)
    for _ in range(5):
        x, y = stream.next()
        assert torch.equal(y, x[:, 0].long() * 10)


@pytest.mark.parametrize("consumed, epoch, index", [(0, 0, 0), (2, 0, 2), (3, 0, 3), (5, 1, 2),
                                                   (7, 2, 1)])
def test_stream_state_dict_resumes_the_exact_next_batch(consumed, epoch, index):
    a = BatchStream(_indexed(10), 3, seed=5, device=CPU)
    for _ in range(consumed):
        a.next()
    state = a.state_dict()
    assert state == {"epoch": epoch, "index": index, "seed": 5, "batch_size": 3}
    b = BatchStream(_indexed(10), 3, seed=5, device=CPU)
    b.load_state_dict(state)
    assert [_ids(a) for _ in range(7)] == [_ids(b) for _ in range(7)]


def test_stream_refuses_a_dataset_smaller_than_a_batch():
    with pytest.raises(ValueError, match="fewer than one batch"):
        BatchStream(_indexed(3), 4, seed=0, device=CPU)


def test_a_folder_smaller_than_a_batch_says_which_batch_size_fits_and_that_one_trains(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from gankit.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    rng = np.random.default_rng(0)
    for i in range(36):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(tmp_path / "mine" / f"{i}.png")
    assert main(["train", "--data", "mine", "--steps", "1", "--run-dir", "run"]) == 2
    err = capsys.readouterr().err
    assert err.endswith("the dataset has 36 samples, fewer than one batch of 64 (train.batch_size): lower it, "
                        "e.g. --set train.batch_size=16\n") and err.count("gankit: error:") == 1
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())
    assert main(["train", "--data", "mine", "--steps", "1", "--run-dir", "run", "--set", "train.batch_size=16",
                 "log.progress=false", "log.tensorboard=false"]) == 0


def test_image_stream_yields_model_range_batches():
    src = build_dataset(DataConfig(name="mnist10k", limit=64))
    stream = BatchStream(src, 16, seed=0, device=CPU)
    x, y = stream.next()
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (16,)
    assert -1.0 <= x.min() and x.max() <= 1.0


def test_unknown_dataset_name():
    with pytest.raises(ConfigError, match="data.name"):
        build_dataset(DataConfig(name="imagenet"))


# ---------------------------------------------------------------------------------------------
# Issue 16: bit depths, huge images, a corrupt file read mid-run


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    Image.fromarray(np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)).save(tmp_path / "g16.png")
    x = folder_module.read_image(tmp_path / "g16.png", 64, 1)
    assert abs(float(x.float().mean()) - 127.5) < 0.5 and len(x.unique()) == 256
    rgb = folder_module.read_image(tmp_path / "g16.png", 64, 3)
    assert rgb.shape == (3, 64, 64) and torch.equal(rgb[0], x[0])


def test_a_large_real_image_decodes_without_pils_warning(tmp_path, recwarn):
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 100 * 100  # a 120 x 120 image is then "large" (12000 x 12000 under the real limit)
    try:
        Image.fromarray(np.full((120, 120), 200, np.uint8)).save(tmp_path / "big.png")
        x = folder_module.read_image(tmp_path / "big.png", 8, 1)
        Image.fromarray(np.full((300, 300), 200, np.uint8)).save(tmp_path / "bomb.png")
        with pytest.raises(DataError, match="bomb.png.*decompression-bomb limit"):
            folder_module.read_image(tmp_path / "bomb.png", 8, 1)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    assert int(x.float().mean()) == 200 and not [w for w in recwarn if "DecompressionBomb" in str(w.category)]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_image_read_mid_run_is_one_line_after_a_checkpoint(image_folder, monkeypatch, tmp_path, workers):
    from conftest import make_cfg
    from gankit.checkpoint import CheckpointDir, load_checkpoint
    from gankit.train import train

    for i in range(13):
        (image_folder / f"copy_{i:02d}.png").write_bytes((image_folder / "a_wide.png").read_bytes())
    monkeypatch.setattr(folder_module, "PRELOAD_BYTES", 0)  # decoded on the fly, as a large folder is
    cfg = make_cfg({"data": {"name": "folder", "root": str(image_folder), "resolution": 8, "num_workers": workers},
                    "model": {"latent_dim": 4, "generator": {"name": "mlp", "widths": [8]},
                              "discriminator": {"name": "mlp", "widths": [8]}},
                    "train": {"device": "cpu", "batch_size": 4, "steps": 20},
                    "log": {"every": 100, "sample_every": 0, "progress": False, "tensorboard": False, "plot": False},
                    "checkpoint": {"every": 100}})
    real_read = folder_module.read_image
    calls = [0]

    def failing_after_a_few(path, resolution, channels):  # the 21st decode: a file damaged while the run reads
        calls[0] += 1
        if calls[0] > 20:
            raise DataError(f"folder: cannot read image {path}: broken data stream")
        return real_read(path, resolution, channels)

    if workers:  # worker processes may not see a patch: a file on disk that fails to decode instead
        (image_folder / "copy_05.png").write_bytes((image_folder / "a_wide.png").read_bytes()[:60])
    else:
        monkeypatch.setattr(folder_module, "read_image", failing_after_a_few)
    with pytest.raises(DataError) as err:
        train(cfg, tmp_path / "run")
    text = str(err.value)
    assert "\n" not in text and text.startswith("folder: cannot read image"), text  # not a worker traceback
    if not workers or "saved" in text:
        assert "continue with --resume" in text
        latest = CheckpointDir(tmp_path / "run" / "checkpoints").latest()
        assert latest is not None and load_checkpoint(latest)[1]["step"] >= 1
