"""What people look at: upscaled grids, strips and GIFs, seed labels, titled loss curves, TensorBoard's
config text and hparams."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import TINY, make_cfg
from gankit.cli import main
from gankit.trackers import hparams
from gankit.sampling import default_scale, label_seeds, load_generator, upscale, write_samples


def test_default_scale_makes_small_images_visible():
    assert [default_scale(s) for s in (2, 28, 32, 64, 128, 256)] == [64, 4, 4, 2, 1, 1]


def test_upscale_is_nearest_neighbour():
    a = np.arange(4, dtype=np.uint8).reshape(2, 2, 1)
    assert upscale(a, 3)[:, :, 0].tolist() == [[0] * 3 + [1] * 3] * 3 + [[2] * 3 + [3] * 3] * 3
    with pytest.raises(ValueError, match="--scale"):
        upscale(a, 0)


def test_cli_outputs_default_to_a_visible_size(tmp_path, trained_run, capsys):
    run = str(trained_run.run_dir)  # 28 px digits: 4x by default
    assert main(["sample", run, "--num", "4", "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size == (4 * (2 * 30 + 2),) * 2
    assert main(["sample", run, "--num", "4", "--out", str(tmp_path / "g1.png"), "--scale", "1"]) == 0
    assert Image.open(tmp_path / "g1.png").size == (62, 62)
    assert main(["interpolate", run, "--out", str(tmp_path / "w.gif"), "--steps", "3"]) == 0
    with Image.open(tmp_path / "w.gif") as gif:
        assert gif.size == (112, 112) and gif.n_frames == 3
    assert main(["interpolate", run, "--out", str(tmp_path / "s.png"), "--steps", "3", "--seeds", "4", "9",
                 "--scale", "2"]) == 0
    strip = np.asarray(Image.open(tmp_path / "s.png"))
    assert strip.shape == (2 * 32 + 14, 2 * (3 * 30 + 2))  # frames, then the band of seed labels
    band = strip[-14:]
    assert (band < 128).any() and (band[:, 60:120] == 255).all()  # text under the first and last frame only
    with np.load(write_samples(load_generator(run), 3, tmp_path / "raw.npz")) as npz:
        assert npz["images"].shape == (3, 28, 28, 1)  # arrays keep the model's resolution


def test_seed_labels_name_each_seed_under_its_frame():
    strip = np.full((10, 300, 3), 128, np.uint8)
    out = label_seeds(strip, [3, 17], steps=5, frames=5)  # the seeds' own frames are the first and last
    assert out.shape == (24, 300, 3) and (out[:10] == 128).all()
    dark = np.nonzero((out[10:] < 100).any(axis=(0, 2)))[0]
    assert dark.min() < 60 and dark.max() > 240 and not ((dark > 90) & (dark < 210)).any()


def test_loss_curves_and_tensorboard_get_the_config_and_final_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    from gankit.train import train

    cfg = make_cfg(TINY, "log.tensorboard=true", "log.plot=true", "train.steps=6", "log.every=2")
    result = train(cfg, tmp_path / "my-run")
    assert (result.run_dir / "loss_curves.png").is_file()
    values = {}
    for path in sorted((result.run_dir / "tensorboard").glob("events.*")):
        for event in EventFileLoader(str(path)).Load():
            values.update({v.tag: v for v in event.summary.value})
    assert {"config/text_summary", "_hparams_/experiment", "_hparams_/session_start_info",
            "final/loss_d", "final/d_fake"} <= set(values)
    text = values["config/text_summary"].tensor.string_val[0].decode()
    assert "latent_dim: 16" in text and "batch_size: 32" in text
    start = values["_hparams_/session_start_info"].metadata.plugin_data.content
    assert b"model.latent_dim" in start and b"train.batch_size" in start


def test_hparams_flatten_sections_and_keep_model_specs_whole():
    flat = hparams({"model": {"latent_dim": 16, "generator": {"name": "dcgan", "width": 8}},
                    "train": {"steps": None, "device": "cpu"}, "optim": {"betas_g": [0.5, 0.9]}})
    assert flat == {"model.latent_dim": 16, "model.generator": "{'name': 'dcgan', 'width': 8}",
                    "train.steps": "None", "train.device": "cpu", "optim.betas_g": "[0.5, 0.9]"}
