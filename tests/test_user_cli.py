"""A new user's commands: presets and init, config --model and its validation, the zoo, --device
errors, train --data on a folder of PNGs, and help text with defaults on every option."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import yaml
from PIL import Image

from gankit.cli import build_parser, main
from gankit.generator_folder import zoo_entry, zoo_names
from gankit.presets import PRESETS, names, resolve_config


def test_presets_are_package_data_and_match_the_repository_configs():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1] / "configs"
    expected = {p.stem for p in repo.glob("*.yaml")} | {f"seeds/{p.stem}" for p in repo.glob("seeds/*.yaml")}
    assert expected == set(names()) >= {"mnist_dcgan", "folder_dcgan", "ring", "seeds/seed004_dcgan_mnist"}
    assert (PRESETS / "ring.yaml").read_text() == (repo / "ring.yaml").read_text()
    assert resolve_config("ring") == str(PRESETS / "ring.yaml")
    assert resolve_config("configs/ring.yaml") == "configs/ring.yaml"  # a path stays a path


def test_the_folder_preset_is_the_default_recipe_on_a_folder():
    """`gankit train --data DIR` trains what the default trains without labels, not an older recipe."""
    folder = yaml.safe_load((PRESETS / "folder_dcgan.yaml").read_text())
    default = yaml.safe_load((PRESETS / "mnist_dcgan.yaml").read_text())
    assert folder.pop("data") == {"name": "folder", "root": "data/images"}
    default.pop("data")
    assert folder == default


def test_init_copies_a_preset_and_train_takes_a_preset_name(tmp_path, capsys):
    assert main(["init", "ring", str(tmp_path)]) == 0
    assert (tmp_path / "ring.yaml").read_text() == (PRESETS / "ring.yaml").read_text()
    assert main(["init", "ring", str(tmp_path)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["init", "rnig", str(tmp_path)]) == 2
    assert "did you mean 'ring'?" in capsys.readouterr().err
    assert main(["init", "--list"]) == 0
    assert "folder_dcgan" in capsys.readouterr().out
    assert main(["train", "ring", "--steps", "3", "--run-dir", str(tmp_path / "run"), "--device", "cpu",
                 "--set", "log.progress=false", "log.sample_every=0", "log.tensorboard=false"]) == 0
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]["latent_dim"] == 2


def test_config_lists_model_arguments_and_validates_them(capsys):
    assert main(["config", "--model", "dcgan"]) == 0
    out = capsys.readouterr().out
    assert "model.generator: {name: dcgan" in out and "model.discriminator" in out
    assert any(line.split()[:2] == ["width", "64"] for line in out.splitlines())
    # what an argument means and which values it takes, not only its type
    assert any(line.split()[:2] == ["norm", "'batch'"] and line.endswith("batch or none") for line in out.splitlines())
    assert main(["config", "--model", "stylgan"]) == 2
    assert "did you mean 'stylegan'?" in capsys.readouterr().err
    assert main(["config", "mnist_dcgan", "--set", "model.generator.widht=64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gankit: error:") and "did you mean 'model.generator.width'" in err
    assert main(["config", "mnist_dcgan", "--set", "model.discriminator.name=nope"]) == 2


def test_the_zoo_samples_right_after_install(tmp_path, capsys):
    assert "ring" in zoo_names()
    entry = zoo_entry("ring")
    assert entry["bytes"] < 1_000_000 and entry["metrics"]["modes"] == 8
    out = tmp_path / "ring.png"
    assert main(["sample", "zoo:ring", "--num", "500", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 200
    assert main(["sample", "zoo:ring", "--num", "100", "--out", str(tmp_path / "p.npz")]) == 0
    points = np.load(tmp_path / "p.npz")["points"]
    assert np.abs(np.linalg.norm(points, axis=1) - 1).mean() < 0.1  # on the unit circle
    assert main(["zoo"]) == 0
    assert "zoo:ring" in capsys.readouterr().out
    assert main(["sample", "zoo:nothing", "--out", str(tmp_path / "x.png")]) == 2
    assert "no zoo model 'nothing'" in capsys.readouterr().err
    total = sum(zoo_entry(n)["bytes"] for n in zoo_names())
    assert total < 5_000_000


@pytest.mark.parametrize("argv", [["sample", "zoo:ring", "--out", "x.png"], ["eval", "zoo:ring", "--ref", "ring"],
                                  ["interpolate", "zoo:ring", "--out", "x.gif"]])
def test_device_errors_name_the_option_the_user_passed(argv, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the error is about a machine without CUDA")  # never on CI (no GPU)
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err == "gankit: error: --device is cuda but no CUDA device is available (use auto or cpu)\n"
    assert main([*argv, "--device", "gpu0"]) == 2
    assert "--device: unknown device 'gpu0'" in capsys.readouterr().err


def test_load_generator_defaults_to_auto_and_names_its_argument():
    import inspect

    from gankit import load_generator
    from gankit.config import ConfigError

    assert inspect.signature(load_generator).parameters["device"].default == "auto"
    with pytest.raises(ConfigError, match="^device: unknown device"):
        load_generator("zoo:ring", device="tpu")


def _png_folder(root, n: int, side: int, gray: bool = True):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        a = rng.integers(0, 255, (side, side) if gray else (side, side, 3), dtype=np.uint8)
        Image.fromarray(a).save(root / f"{i:03d}.png")
    return root


def test_train_data_dir_infers_the_shape_and_says_so(tmp_path, capsys):
    folder = _png_folder(tmp_path / "mine", 40, 30)
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--steps", "2", "--run-dir", str(run), "--device", "cpu",
                 "--set", "train.batch_size=16", "log.progress=false", "log.tensorboard=false",
                 "log.sample_every=0"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "data: 40 images under" in out and "28x28 grayscale (size: the trainable side nearest the images' " \
        "median side 30 px" in out and "only 40 images" in out
    # 40 images fill two clusters of 20: the default's self-conditioning, scaled to the folder
    assert "self-conditioned on 2 clusters of D's features (no labels, fewer than the 10 asked for" in captured.err
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["name"] == "folder" and cfg["model"]["generator"]["name"] == "dcgan"
    assert cfg["model"]["self_condition"] == 2 and cfg["model"]["conditional"] is False
    from gankit import load_generator

    assert load_generator(run).data_shape == (1, 28, 28)
    assert main(["train", "--data", str(tmp_path / "none"), "--run-dir", str(tmp_path / "r2")]) == 2
    assert "is not a directory" in capsys.readouterr().err and not (tmp_path / "r2").exists()
    assert main(["train"]) == 2
    assert "needs a config" in capsys.readouterr().err


def test_every_option_has_help_that_states_its_default():
    missing = []

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}")
                continue
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            text = action.help or ""
            flag_only = isinstance(action, argparse._StoreTrueAction)
            needs_default = action.option_strings and not action.required and not flag_only
            if not text or (needs_default and "default" not in text):
                missing.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "gankit")
    assert not missing, missing


def test_tutorial_presets_and_the_python_loader_work_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    import gankit

    monkeypatch.chdir(tmp_path)  # outside the checkout: no configs/ here
    assert "seeds/seed004_dcgan_mnist" in names()
    for name in ("seeds/seed004_dcgan_mnist", "seed004_dcgan_mnist", "configs/seeds/seed004_dcgan_mnist.yaml"):
        assert resolve_config(name) == str(PRESETS / "seeds" / "seed004_dcgan_mnist.yaml")
    assert gankit.load_config("mnist_dcgan", ["train.steps=7"]).train.steps == 7
    assert gankit.load_config("configs/mnist_dcgan.yaml").model.self_condition == 10
    assert main(["init", "--list"]) == 0
    assert "seeds/seed000_mlp_mnist" in capsys.readouterr().out
    assert main(["init", "seed000_mlp_mnist", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "seed000_mlp_mnist.yaml").is_file()
    assert main(["train", "seed00_mlp_mnist", "--steps", "1"]) == 2
    assert "did you mean 'seeds/seed000_mlp_mnist'?" in capsys.readouterr().err


def test_every_argument_of_every_built_in_model_says_what_it_means():
    from gankit.models.registry import describe_model, GENERATORS, DISCRIMINATORS
    from gankit.models.translation import PATCH_DISCRIMINATORS, TRANSLATORS

    names = {n for r in (GENERATORS, DISCRIMINATORS, TRANSLATORS, PATCH_DISCRIMINATORS) for n in r.names()}
    missing = [f"{n}.{role}.{arg}" for n in sorted(names) for role, rows in describe_model(n)
               for arg, _, _, meaning in rows if not meaning]
    assert not missing, f"add to gankit/models/arguments.py: {missing}"
