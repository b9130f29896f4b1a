"""Image-to-image games: networks, digit tasks, folder layouts, training, exact resume, crash safety,
two processes, `gankit translate` and `gankit eval` on pix2pix and CycleGAN runs."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import assert_states_equal, make_cfg, png_claiming, step_game
from gankit.checkpoint import CheckpointDir, load_checkpoint
from gankit.cli import main
from gankit.config import from_dict
from gankit.models.translation import PatchGAN, ResnetTranslator, UNet
from gankit.train import prepare, train
from gankit.translation.tasks import bold, build_task, digits, edge_map, make_masks

REPO = Path(__file__).resolve().parents[1]

P2P = {
    "game": {"name": "pix2pix", "task": "superres4"},
    "data": {"limit": 64},
    "model": {"generator": {"name": "unet", "width": 4, "depth": 2, "bottleneck": 1},
              "discriminator": {"name": "patchgan", "width": 4, "n_layers": 2}},
    "train": {"device": "cpu", "batch_size": 8, "steps": 20, "threads": 1},
    "log": {"every": 5, "sample_every": 0, "grid": 4, "progress": False, "tensorboard": False, "plot": False},
    "checkpoint": {"every": 10, "keep": 5},
}
CYCLE = make_cfg(P2P, "game={name: cyclegan, task: bold, pool_size: 3}", "train.batch_size=4",
                 "model.generator={name: resnet, width: 4, blocks: 1}",
                 "model.discriminator={name: patchgan, width: 4, n_layers: 2, norm: instance}",
                 "objective.name=lsgan", "optim.schedule=hold-linear")


def test_networks_keep_the_image_shape():
    x = torch.randn(2, 3, 32, 32)
    assert UNet(3, 1, width=8, depth=3, bottleneck=1)(x).shape == (2, 1, 32, 32)
    assert UNet(2, 1, width=4, depth=2)(torch.randn(2, 2, 28, 28)).shape == (2, 1, 28, 28)
    assert ResnetTranslator(3, 3, width=4, blocks=2)(torch.randn(2, 3, 28, 28)).shape == (2, 3, 28, 28)
    assert PatchGAN(4, width=4, n_layers=2)(torch.randn(2, 1, 28, 28), torch.randn(2, 3, 28, 28)).shape == (2, 1, 5, 5)
    with pytest.raises(ValueError, match="divisible by 8"):
        UNet(1, 1, width=4, depth=3)(torch.randn(1, 1, 28, 28))


def test_unet_of_the_paper_reaches_1x1_at_256px():
    net = UNet(3, 3, width=8, depth=8, max_width=16)
    assert net(torch.randn(1, 3, 256, 256)).shape == (1, 3, 256, 256)


def test_masks():
    gen = torch.Generator().manual_seed(0)
    centre = make_masks("centre", 3, 28, gen)
    assert int(centre[0].sum()) == 14 * 14 and centre[:, :, 7:21, 7:21].all()
    boxes = make_masks("boxes", 50, 28, gen).flatten(1).sum(1)
    assert int(boxes.min()) >= 7 * 7 and int(boxes.max()) <= 14 * 14
    strokes = make_masks("strokes", 50, 28, gen)
    assert strokes.max() == 1 and 0 < float(strokes.float().mean()) < 0.5


def test_digit_tasks_train_on_the_first_9000_and_hold_out_the_last_1000():
    images, labels = digits()
    task = build_task(from_dict({"game": {"name": "pix2pix", "task": "superres4"}}))
    assert task.input_shape == (1, 7, 7) and len(task.targets) == 9000
    assert torch.equal(task.targets, images[:9000]) and torch.equal(task.holdout.targets, images[9000:])
    assert task.holdout.inputs.shape == (1000, 1, 7, 7)
    # area averaging: each input pixel is the rounded mean of its 4 x 4 block
    assert int(task.holdout.inputs[0, 0, 0, 0]) == round(float(images[9000, 0, :4, :4].float().mean()))
    inpaint = build_task(from_dict({"game": {"name": "pix2pix", "task": "inpaint"}}))
    assert (inpaint.holdout.inputs[:, :, 7:21, 7:21] == 127).all() and inpaint.g_channels == 2
    e = edge_map(images[:4])
    assert set(e.unique().tolist()) <= {0, 255}
    cyc = build_task(from_dict({"game": {"name": "cyclegan", "task": "bold"}}))
    assert len(cyc.domain_a) == len(cyc.domain_b) == 4500 and cyc.domain_a.shape[1] == 3
    assert torch.equal(cyc.domain_b, bold(images[4500:9000]))  # no digit is in both domains
    assert torch.equal(cyc.holdout_ab.targets, bold(images[9000:]))


def test_a_task_must_fit_its_game(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(make_cfg(P2P, "game.task=bold")))
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    assert "game.task 'bold' is not a paired task" in capsys.readouterr().err
    config.write_text(yaml.safe_dump(make_cfg(P2P, "game.task=superres3")))
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    assert "did you mean 'superres4'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("cfg", [P2P, CYCLE], ids=["pix2pix", "cyclegan"])
def test_training_moves_the_losses_and_writes_input_output_target_grids(tmp_path, cfg):
    result = train(make_cfg(cfg, "train.steps=30", "log.sample_every=30"), tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    key = "l1" if cfg is P2P else "cycle"
    assert rows[-1][key] < rows[0][key]
    grid = np.asarray(Image.open(tmp_path / "run" / "samples" / "step_000030.png"))
    side = 28 * (3 if cfg is P2P else 6) + 2 * (3 if cfg is P2P else 6) + 2  # rows of 28 px with 2 px padding
    assert grid.shape[0] == side
    assert result.step == 30


# a decaying schedule follows train.steps, which the first half of a resumed run sets to 20: constant here
@pytest.mark.parametrize("cfg", [make_cfg(P2P, "game.task=inpaint-boxes"), make_cfg(CYCLE, "optim.schedule=constant")],
                         ids=["pix2pix", "cyclegan"])
def test_resume_is_bit_exact(tmp_path, cfg):
    train(make_cfg(cfg, "train.steps=20"), tmp_path / "resumed")
    train(make_cfg(cfg, "train.steps=40"), tmp_path / "resumed", resume=True)
    train(make_cfg(cfg, "train.steps=40"), tmp_path / "straight")
    a, meta_a = load_checkpoint(CheckpointDir(tmp_path / "resumed" / "checkpoints").latest())
    b, meta_b = load_checkpoint(CheckpointDir(tmp_path / "straight" / "checkpoints").latest())
    assert meta_a["step"] == meta_b["step"] == 40 and meta_a["data"] == meta_b["data"]
    assert_states_equal(a, b)
    if "pool" in a:
        assert a["pool"]["A"]["count"] == 3  # the history pool was full and is part of the state


def test_a_gan_checkpoint_does_not_resume_as_a_translation_game(tmp_path, capsys, tiny_yaml):
    assert main(["train", str(tiny_yaml), "--run-dir", str(tmp_path / "run"), "--steps", "2"]) == 0
    capsys.readouterr()
    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump(P2P))
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run"), "--resume"]) == 2
    assert "game.name: checkpoint has 'gan', config has 'pix2pix'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("translation")
    out = {}
    for name, cfg in (("superres4", P2P), ("inpaint", make_cfg(P2P, "game.task=inpaint")), ("cyclegan", CYCLE)):
        train(make_cfg(cfg, "train.steps=10"), root / name)
        out[name] = root / name
    return out


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_translate_npz_and_folders(runs, tmp_path, capsys):
    images, _ = digits()
    small = torch.nn.functional.avg_pool2d(images[-5:].float(), 4).round().to(torch.uint8)[:, 0].numpy()
    src = _npz(tmp_path / "in.npz", images=small)
    assert main(["translate", str(runs["superres4"]), "--input", str(src), "--out", str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as npz:
        assert npz["images"].shape == (5, 28, 28, 1) and npz["images"].dtype == np.uint8
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, img in enumerate(small):
        Image.fromarray(img).save(folder / f"d{i}.png")
    assert main(["translate", str(runs["superres4"]), "--input", str(folder), "--out", str(tmp_path / "o")]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [f"d{i}.png" for i in range(5)]
    assert main(["translate", str(runs["superres4"]), "--input", str(src.rename(tmp_path / "in.NPZ")), "--out",
                 str(tmp_path / "OUT.NPZ")]) == 0  # suffixes in any case, as the GAN commands take them
    with np.load(tmp_path / "OUT.NPZ") as npz:
        assert npz["images"].shape == (5, 28, 28, 1)
    # inpainting: the preset's fixed mask, or the caller's; known pixels are kept
    full = images[-5:, 0].numpy()
    masks = np.zeros_like(full)
    masks[:, :10, :10] = 1
    src = _npz(tmp_path / "masked.npz", images=full, masks=masks)
    assert main(["translate", str(runs["inpaint"]), "--input", str(src), "--out", str(tmp_path / "inp.npz")]) == 0
    with np.load(tmp_path / "inp.npz") as npz:
        out = npz["images"][..., 0]
    assert np.array_equal(out[:, 10:, 10:], full[:, 10:, 10:])
    # cyclegan: both directions, grey digits accepted for the RGB domain A
    for direction in ("AtoB", "BtoA"):
        assert main(["translate", str(runs["cyclegan"]), "--input", str(_npz(tmp_path / "g.npz", images=full)),
                     "--out", str(tmp_path / f"{direction}.npz"), "--direction", direction]) == 0
        with np.load(tmp_path / f"{direction}.npz") as npz:
            assert npz["images"].shape == (5, 28, 28, 3)
    capsys.readouterr()


def test_translate_folder_keeps_relative_paths_and_reads_like_the_folder_dataset(runs, tmp_path, capsys):
    """Issue 27, defects 2 and 8: ``one/x.png`` and ``two/x.png`` are two outputs, not one written twice; a
    16-bit PNG is scaled (30000 -> 117) as the GAN folder reader scales it; a file claiming 100000 x 100000
    pixels is one line naming it."""
    folder, out = tmp_path / "in", tmp_path / "out"
    for sub, value in (("one", 40), ("two", 200)):
        (folder / sub).mkdir(parents=True)
        Image.fromarray(np.full((7, 7), value, np.uint8)).save(folder / sub / "x.png")
    Image.fromarray(np.full((7, 7), 30000, np.uint16)).save(folder / "wide.png")
    Image.fromarray(np.full((7, 7), 117, np.uint8)).save(folder / "narrow.png")
    assert main(["translate", str(runs["superres4"]), "--input", str(folder), "--out", str(out)]) == 0
    assert "translated 4 images" in capsys.readouterr().out
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["narrow.png", "one/x.png", "two/x.png", "wide.png"]
    one, two = (np.asarray(Image.open(out / sub / "x.png")) for sub in ("one", "two"))
    assert not np.array_equal(one, two)
    assert np.array_equal(np.asarray(Image.open(out / "wide.png")), np.asarray(Image.open(out / "narrow.png")))
    (folder / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    assert main(["translate", str(runs["superres4"]), "--input", str(folder), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{folder / 'bomb.png'}: it claims more than" in err


@pytest.mark.parametrize("files, out, message", [
    (["a.png", "a.jpg"], "o", "{i}/a.jpg and {i}/a.png would both be translated to a.png; rename one"),
    (["x.png"], "t.png", "--out {t}/t.png: translations are written to an .npz file or a folder of PNGs"),
    (["x.png"], "t.JPG", "t.JPG names a file; use {t}/t.npz or a folder such as {t}/t"),
    (["x.png"], "file", "--out {t}/file is a file"),
])
def test_translate_refuses_outputs_that_would_be_lost_or_misnamed(runs, tmp_path, capsys, files, out, message):
    """Issue 27, defects 2 and 23: two inputs with one output name, or a folder output named like a file,
    are refused before anything is written."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in files:
        Image.fromarray(np.full((7, 7), 9, np.uint8)).save(folder / name)
    (tmp_path / "file").write_text("mine")
    before = sorted(tmp_path.rglob("*"))
    assert main(["translate", str(runs["superres4"]), "--input", str(folder), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(i=folder, t=tmp_path) in err, err
    assert sorted(tmp_path.rglob("*")) == before and (tmp_path / "file").read_text() == "mine"


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((2, 28, 28), np.uint8)}, "`images` must be uint8 N x 7 x 7"),
    ({"images": np.zeros((2, 7, 7), np.float32)}, "`images` must be uint8 N x 7 x 7"),
    ({"pictures": np.zeros((2, 7, 7), np.uint8)}, "holds no `images` array"),
    ({"images": np.zeros((0, 7, 7), np.uint8)}, "with N >= 1; got uint8 0 x 7 x 7"),
    # issue 27, defect 13: the header is checked before anything is allocated; objects are never unpickled
    ({"images": np.array([None, {}], dtype=object)}, "in.npz: `images` holds Python objects"),
    ("huge", "in.npz: `images`: the header claims uint8 1000000000000 x 7 x 7 (49,000,000,000,000 bytes)"),
    ({"images": np.zeros((2, 7, 7), np.uint8), "masks": np.zeros((2, 7, 7), np.float32)},
     "`masks` must be uint8 N x 7 x 7 of 0 and 1 (1 = missing); got float32 2 x 7 x 7"),
])
def test_translate_refuses_wrong_inputs_in_one_line(runs, tmp_path, capsys, arrays, message):
    if arrays == "huge":
        import zipfile

        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                      "shape": (10**12, 7, 7)})
        with zipfile.ZipFile(tmp_path / "in.npz", "w") as zf:
            zf.writestr("images.npy", header.getvalue() + b"\0" * 100)
        src = tmp_path / "in.npz"
    else:
        src = _npz(tmp_path / "in.npz", **arrays)
    assert main(["translate", str(runs["superres4"]), "--input", str(src), "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "o.npz").exists()


def test_translate_refuses_a_direction_pix2pix_lacks_and_bad_masks(runs, tmp_path, capsys):
    src = _npz(tmp_path / "in.npz", images=np.zeros((2, 7, 7), np.uint8))
    assert main(["translate", str(runs["superres4"]), "--input", str(src), "--out", str(tmp_path / "o.npz"),
                 "--direction", "BtoA"]) == 2
    assert "translates one way" in capsys.readouterr().err
    src = _npz(tmp_path / "m.npz", images=np.zeros((2, 28, 28), np.uint8), masks=np.full((2, 28, 28), 3, np.uint8))
    assert main(["translate", str(runs["inpaint"]), "--input", str(src), "--out", str(tmp_path / "o.npz")]) == 2
    assert "`masks` must be uint8 N x 28 x 28 of 0 and 1" in capsys.readouterr().err


def test_eval_of_translation_runs(runs, tmp_path, capsys):
    out = tmp_path / "sr.json"
    assert main(["eval", str(runs["superres4"]), "--json", str(out)]) == 0
    result = json.loads(out.read_text())["results"]["AtoB"]
    assert set(result["output"]) == {"psnr", "ssim", "accuracy", "fid"}
    assert 14 < result["baseline"]["psnr"] < 16 and result["target"]["accuracy"] > 0.95
    assert main(["eval", str(runs["inpaint"]), "--json", str(out)]) == 0
    result = json.loads(out.read_text())["results"]["AtoB"]
    assert {"psnr_box", "ssim_box"} <= set(result["output"]) and result["baseline"]["accuracy"] < 0.5
    assert main(["eval", str(runs["cyclegan"]), "--json", str(out)]) == 0
    result = json.loads(out.read_text())["results"]
    assert set(result) == {"AtoB", "BtoA"} and result["AtoB"]["target"]["accuracy"] > 0.95  # unbold reads bold
    assert "untranslated input" in capsys.readouterr().out
    assert main(["sample", str(runs["cyclegan"]), "--num", "5", "--out", str(tmp_path / "s.png")]) == 0
    # upscaled 4x by default (about 128 px per 28 px image), as every grid gankit writes
    assert np.asarray(Image.open(tmp_path / "s.png")).shape[:2] == (4 * (6 * 30 + 2), 4 * (5 * 30 + 2))
    from gankit.sampling import load_generator

    with pytest.raises(Exception, match="gankit translate"):
        load_generator(runs["cyclegan"])


@pytest.mark.parametrize("argv, option", [
    (["eval", "--ref", "mnist10k"], "--ref"), (["eval", "--metrics", "fid"], "--metrics"),
    (["eval", "--num", "10"], "--num"), (["eval", "--seed", "0"], "--seed"), (["eval", "--split", "test"], "--split"),
    (["eval", "--num-reference", "5"], "--num-reference"), (["eval", "--no-ema"], "--no-ema"),
    (["sample", "--drs"], "--drs"), (["sample", "--truncation", "0.5"], "--truncation"),
    (["sample", "--class", "0"], "--class"), (["sample", "--seed", "3"], "--seed"),
    (["sample", "--batch-size", "8"], "--batch-size"),
])
def test_noise_to_image_options_are_refused_for_translation_runs(runs, tmp_path, capsys, argv, option):
    """Issue 27, defect 23: they were accepted and silently ignored."""
    out = ["--out", str(tmp_path / "s.png")] if argv[0] == "sample" else []
    assert main([argv[0], str(runs["superres4"]), *argv[1:], *out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"gankit: error: {option} does not apply to ")
    assert "a pix2pix run" in err
    assert list(tmp_path.iterdir()) == []


def test_sample_of_a_translation_run_says_how_many_images_it_shows(runs, tmp_path, capsys):
    """Issue 27, defect 23: --num 5000 of a task holding 1,000 said 5000; upper-case suffixes are grids too."""
    out = tmp_path / "S.PNG"
    assert main(["sample", str(runs["superres4"]), "--num", "5000", "--scale", "1", "--out", str(out)]) == 0
    assert "rows of 1000 held-out images (all there are; --num asked for 5000)" in capsys.readouterr().out
    assert Image.open(out).size == (1000 * 30 + 2, 3 * 30 + 2)


# ---------------------------------------------------------------------------------------------
# Folder layouts


def _png(path: Path, w: int, h: int, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def _folder_cfg(root: Path, game: str, task: str) -> dict:
    extra = ["model.discriminator.norm=instance"] if game == "cyclegan" else []
    return from_dict(make_cfg(CYCLE if game == "cyclegan" else P2P, f"game.task={task}", f"data.root={root}",
                              "data.resolution=16", "data.limit=null", "train.batch_size=2", *extra))


def test_folder_layouts(tmp_path):
    for i in range(3):
        img = np.concatenate([np.full((20, 20, 3), 10 * i, np.uint8), np.full((20, 20, 3), 200, np.uint8)], 1)
        (tmp_path / "aligned").mkdir(exist_ok=True)
        Image.fromarray(img).save(tmp_path / "aligned" / f"{i}.png")
        _png(tmp_path / "paired" / "A" / f"{i}.png", 24, 24, 10 * i)
        _png(tmp_path / "paired" / "B" / f"{i}.png", 24, 24, 200)
        _png(tmp_path / "unpaired" / "trainA" / f"{i}.png", 30 + i, 20)
        _png(tmp_path / "unpaired" / "trainB" / f"x{i}.jpg", 20, 20)
    for task in ("aligned", "paired"):
        t = build_task(_folder_cfg(tmp_path / task, "pix2pix", task))
        assert t.inputs.shape == t.targets.shape == (3, 3, 16, 16)
        assert int(t.inputs[2].float().mean()) == 20 and int(t.targets[0].float().mean()) == 200
        back = build_task(from_dict({**_folder_cfg(tmp_path / task, "pix2pix", task).to_dict(),
                                     "game": {"name": "pix2pix", "task": task, "direction": "BtoA"}}))
        assert torch.equal(back.inputs, t.targets)
    u = build_task(_folder_cfg(tmp_path / "unpaired", "cyclegan", "unpaired"))
    assert u.domain_a.shape == u.domain_b.shape == (3, 3, 16, 16)
    trainer = prepare(_folder_cfg(tmp_path / "paired", "pix2pix", "paired"))
    assert set(step_game(trainer, 10)) >= {"l1", "loss_d", "loss_g"}
    trainer = prepare(_folder_cfg(tmp_path / "unpaired", "cyclegan", "unpaired"))
    assert set(step_game(trainer, 10)) >= {"cycle", "identity"}


@pytest.mark.parametrize("layout, message", [
    ("corrupt", "cannot read image"),
    ("bomb", "decompression-bomb limit"),
    ("unequal", "a pair must have one size"),
    ("lonely", "has no partner"),
    ("odd", "two halves of equal width"),
])
def test_folder_errors_are_one_line(tmp_path, capsys, layout, message):
    root = tmp_path / "data"
    task = "aligned" if layout == "odd" else "paired"
    if layout == "odd":
        _png(root / "a.png", 41, 20)
    else:
        _png(root / "A" / "0.png", 24, 24)
        _png(root / "B" / "0.png", 24, 20 if layout == "unequal" else 24)
        if layout == "corrupt":
            (root / "B" / "0.png").write_bytes(b"not a png")
        if layout == "bomb":
            (root / "B" / "0.png").write_bytes(png_claiming(100_000, 100_000))
        if layout == "lonely":
            _png(root / "A" / "1.png", 24, 24)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_folder_cfg(root, "pix2pix", task).to_dict()))
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_folder_tasks_decode_through_the_folder_readers_decoder(tmp_path, monkeypatch):
    """Issue 27, defect 8: 16-bit PNGs are scaled (30000 -> 117), as the GAN folder dataset reads them, and an
    unpaired folder holding a decompression bomb is one line naming it."""
    from gankit.data import folder as folder_module
    from gankit.data.source import DataError

    for side in "AB":
        (tmp_path / "paired" / side).mkdir(parents=True)
        Image.fromarray(np.full((16, 16), 30000, np.uint16)).save(tmp_path / "paired" / side / "0.png")
    cfg = from_dict({**_folder_cfg(tmp_path / "paired", "pix2pix", "paired").to_dict(), "data": {
        "root": str(tmp_path / "paired"), "resolution": 16, "channels": 1}})
    task = build_task(cfg)
    assert task.inputs.unique().tolist() == [117] == folder_module.read_image(
        tmp_path / "paired" / "A" / "0.png", 16, 1).unique().tolist()
    _png(tmp_path / "unpaired" / "trainA" / "0.png", 16, 16)
    (tmp_path / "unpaired" / "trainB").mkdir()
    (tmp_path / "unpaired" / "trainB" / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    with pytest.raises(DataError, match="bomb.png: it claims more than"):
        build_task(_folder_cfg(tmp_path / "unpaired", "cyclegan", "unpaired"))


@pytest.mark.parametrize("game, task", [("pix2pix", "aligned"), ("pix2pix", "paired"), ("cyclegan", "unpaired")])
def test_folder_tasks_that_cannot_fit_in_memory_are_refused_before_decoding(tmp_path, monkeypatch, capsys, game,
                                                                             task):
    """Issue 27, defect 10: the images' total size at data.resolution is checked against this machine's memory
    first (here a machine of 64 MiB: 2 x 3 images of 3 x 2048 x 2048 bytes are 72 MiB)."""
    from gankit.data import source

    root = tmp_path / "data"
    for i in range(3):
        for sub in {"aligned": [""], "paired": ["A", "B"], "unpaired": ["trainA", "trainB"]}[task]:
            _png(root / sub / f"{i}.png", 40 if task == "aligned" else 20, 20)
    monkeypatch.setattr(source, "physical_memory", lambda: 64 << 20)
    monkeypatch.setattr("gankit.translation.folders.decode_image", lambda *a: pytest.fail("decoded first"))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**_folder_cfg(root, game, task).to_dict(),
                                      "data": {"root": str(root), "resolution": 2048}}))
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gankit: error: data.resolution 2048: 6 images of 2048 x 2048")
    assert "0.1 GiB in memory, more than half of this machine's 0.1 GiB; lower data.resolution" in err
    assert not (tmp_path / "run").exists()


def test_a_folder_run_translates_without_its_training_data(tmp_path, capsys, monkeypatch):
    """Issue 27, defect 9: the checkpoint holds what translating needs (shapes, channels, the task's kind), so
    translate works after the data moved, without decoding the folder again; eval and sample, which need
    held-out pairs a folder task does not have, say so without reading it; a checkpoint saved before the task
    was stored still loads while its data is there, and says why it needs it when it is not."""
    from gankit.checkpoint import save_checkpoint
    from gankit.translation import evaluate

    root = tmp_path / "data"
    for i in range(4):
        _png(root / "A" / f"{i}.png", 20, 20, 10 * i)
        _png(root / "B" / f"{i}.png", 20, 20, 200)
    run = tmp_path / "run"
    train(make_cfg(_folder_cfg(root, "pix2pix", "paired").to_dict(), "train.steps=1"), run)
    assert f"| paired folder {root}: 4 3x16x16 images |" in capsys.readouterr().err  # defect 23: not mnist10k
    root.rename(tmp_path / "moved")
    monkeypatch.setattr(evaluate, "build_task", lambda cfg: pytest.fail("the task was rebuilt from its data"))
    src = _npz(tmp_path / "in.npz", images=np.zeros((2, 16, 16, 3), np.uint8))
    assert main(["translate", str(run), "--input", str(src), "--out", str(tmp_path / "out.npz")]) == 0
    assert "translated 2 images (pix2pix paired, AtoB)" in capsys.readouterr().out
    for argv in (["eval", str(run)], ["sample", str(run), "--out", str(tmp_path / "s.png")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "the paired task has no held-out images" in err
    monkeypatch.undo()
    old = tmp_path / "old.safetensors"
    state, meta = load_checkpoint(CheckpointDir(run / "checkpoints").latest())
    save_checkpoint(old, state, {k: v for k, v in meta.items() if k != "task"})
    assert main(["translate", str(old), "--input", str(src), "--out", str(tmp_path / "out.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "saved before gankit stored a run's task" in err and f"{root / 'A'}" in err
    (tmp_path / "moved").rename(root)
    assert main(["translate", str(old), "--input", str(src), "--out", str(tmp_path / "out.npz")]) == 0


def test_eval_says_when_a_digit_tasks_held_out_images_cannot_be_made(runs, monkeypatch, capsys):
    from gankit.data.source import DataError
    from gankit.translation import tasks

    def gone():
        raise DataError("mnist10k: the bundled digits are missing")

    monkeypatch.setattr(tasks, "digits", gone)
    assert main(["eval", str(runs["superres4"])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the superres4 task's held-out images cannot be made: mnist10k" in err


# ---------------------------------------------------------------------------------------------
# Processes


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "GLOO_SOCKET_IFNAME": "lo"}


def test_sigkill_loses_at_most_one_checkpoint_interval(tmp_path):
    config, run = tmp_path / "p.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(make_cfg(P2P, "train.steps=100000", "log.every=1", "checkpoint.every=5")))
    proc = subprocess.Popen([sys.executable, "-m", "gankit", "train", str(config), "--run-dir", str(run)],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "step_00000012.safetensors").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    metrics = run / "metrics.jsonl"
    while time.monotonic() < deadline and int(json.loads(metrics.read_text().splitlines()[-1])["step"]) % 5 < 3:
        time.sleep(0.01)  # kill between two checkpoints
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    last_logged = int(json.loads(metrics.read_text().splitlines()[-1])["step"])
    _, meta = load_checkpoint(CheckpointDir(run / "checkpoints").latest())
    # a kill after step k's row but before its checkpoint is complete loses k - (k - 5): one interval
    assert 0 <= last_logged - meta["step"] <= 5
    again = subprocess.run([sys.executable, "-m", "gankit", "train", str(config), "--run-dir", str(run), "--resume",
                            "--steps", str(meta["step"] + 2)], env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"at step {meta['step'] + 2}" in again.stdout


@pytest.mark.parametrize("cfg", [P2P, CYCLE], ids=["pix2pix", "cyclegan"])
def test_two_processes(tmp_path, cfg):
    config, run = tmp_path / "c.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(make_cfg(cfg, "checkpoint.every=2")))
    done = subprocess.run([sys.executable, "-m", "gankit", "train", str(config), "--run-dir", str(run), "--steps", "4",
                           "--nproc", "2"], env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("reached its step target at step 4") == 1
    state, meta = load_checkpoint(CheckpointDir(run / "checkpoints").latest())
    assert meta["world_size"] == 2 and [r["rank"] for r in state["rng"]["ranks"]] == [0, 1]
    resumed = subprocess.run([sys.executable, "-m", "gankit", "train", str(config), "--run-dir", str(run), "--steps",
                              "6", "--nproc", "2", "--resume"], env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(CheckpointDir(run / "checkpoints").latest())[1]["step"] == 6


@pytest.mark.parametrize("preset", ["mnist_superres4", "mnist_inpaint", "mnist_edges", "mnist_cyclegan"])
def test_presets_train_a_step(preset):
    from gankit.config import load

    trainer = prepare(load(REPO / "configs" / f"{preset}.yaml", ["train.threads=1"]))
    stats = step_game(trainer, 10)
    assert all(bool(torch.isfinite(v)) for v in stats.values())
    assert len(trainer.source) in (9000, 4500)  # the held-out 1,000 are never trained on


def test_config_validates_translation_models_against_their_own_registries(capsys, tmp_path):
    for preset in ("mnist_superres4", "mnist_inpaint", "mnist_edges", "mnist_cyclegan"):
        assert main(["config", str(REPO / "configs" / f"{preset}.yaml")]) == 0, capsys.readouterr().err
    assert "name: unet" in capsys.readouterr().out
    assert main(["config", "--model", "unet"]) == 0 and "bottleneck" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "configs" / "mnist_inpaint.yaml").read_text().replace("depth: 2", "detph: 2"))
    assert main(["config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "detph" in err and "depth" in err


@pytest.mark.parametrize("preset", ["folder_pix2pix_256", "folder_cyclegan_256"])
def test_gpu_presets_load_and_name_their_folders(preset, tmp_path, capsys):
    assert main(["train", str(REPO / "configs" / f"{preset}.yaml"), "--run-dir", str(tmp_path / "run"),
                 "--set", f"data.root={tmp_path / 'missing'}"]) == 2
    assert "is not a directory" in capsys.readouterr().err
