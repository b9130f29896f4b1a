"""Class-conditional GANs: conditional G and D of every backbone, training on labels, class-per-row
grids, sampling a class (Python and CLI), labels in .npz files, class agreement, bit-exact resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, assert_states_equal, make_cfg
from gankit.checkpoint import CheckpointDir, load_checkpoint
from gankit.cli import main
from gankit.config import ConfigError, ModelConfig
from gankit.models import build_discriminator, build_generator, build_models
from gankit.models.conditional import ConditionalBatchNorm, Projection
from gankit.sampling import class_labels, load_generator, write_samples
from gankit.train import train

Z, K = 8, 10

BACKBONES = {
    "mlp": ({"name": "mlp", "widths": [16]}, {"name": "mlp", "widths": [16]}),
    "dcgan": ({"name": "dcgan", "width": 4}, {"name": "dcgan", "width": 4}),
    "dcgan-cbn": ({"name": "dcgan", "width": 4, "conditional_norm": True, "embed_dim": 0},
                  {"name": "dcgan", "width": 4, "head": "fc", "fc_hidden": [8]}),
    "resnet": ({"name": "resnet", "width": 4}, {"name": "resnet", "width": 4, "spectral_norm": True}),
}

# A conditional version of the shared tiny run: cBN in G, projection D with dropout, every augmentation.
COND = ["model.conditional=true",
        "model.generator={name: dcgan, width: 8, conditional_norm: true}", "train.augment=translation,cutout,color"]


@pytest.mark.parametrize("conditioning", ["concat", "projection"])
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_conditional_shapes_and_label_dependence(backbone, conditioning):
    g_spec, d_spec = BACKBONES[backbone]
    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=Z, generator=g_spec, discriminator={**d_spec, "conditioning": conditioning})
    g, d = build_models(cfg, (1, 28, 28), num_classes=K)
    z, y = torch.randn(4, Z), torch.tensor([0, 3, 3, 9])
    x = g(z, y)
    logits = d(x, y)
    assert x.shape == (4, 1, 28, 28) and logits.shape == (4,) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in g.parameters())  # label embeddings / cBN tables included
    g.eval(), d.eval()
    with torch.no_grad():  # the labels change what G draws and what D says
        for m in g.modules():  # per-class norm scales start equal (a plain BatchNorm); as if trained:
            if isinstance(m, ConditionalBatchNorm):
                m.gain.weight.normal_(1.0, 0.1)
        assert not torch.allclose(g(z, y), g(z, (y + 1) % K))
        assert not torch.allclose(d(x, y), d(x, (y + 1) % K))


def test_projection_and_conditional_norm_are_used():
    g = build_generator({"name": "dcgan", "width": 4, "conditional_norm": True}, Z, (1, 28, 28), K)
    assert any(isinstance(m, ConditionalBatchNorm) for m in g.modules())
    # every BatchNorm's scale and shift is per class (the inner norms keep only the statistics)
    assert all(not m.affine for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d))
    for name in ("mlp", "dcgan", "resnet"):
        d = build_discriminator({"name": name}, (1, 28, 28), K)
        assert isinstance(d.projection, Projection) and d.projection.embed.num_embeddings == K
        concat = build_discriminator({"name": name, "conditioning": "concat"}, (1, 28, 28), K)
        assert concat.projection is None and concat.embed.num_embeddings == K
    # unconditional models hold no label parameters at all
    d = build_discriminator({"name": "dcgan"}, (1, 28, 28))
    assert d.projection is None and d.embed is None


def test_conditional_models_need_labels():
    g = build_generator({"name": "mlp"}, Z, (2,), 4)
    with pytest.raises(ValueError, match="class-conditional.*labels y"):
        g(torch.randn(2, Z))
    d = build_discriminator({"name": "resnet", "width": 4}, (1, 28, 28), 4)
    with pytest.raises(ValueError, match="class-conditional"):
        d(torch.randn(2, 1, 28, 28))


@pytest.mark.parametrize("build, match", [
    (lambda: build_generator({"name": "dcgan", "conditional_norm": True, "norm": "none"}, Z, (1, 28, 28), K),
     "conditional_norm"),
    (lambda: build_generator({"name": "dcgan", "embed_dim": 0}, Z, (1, 28, 28), K), "embed_dim"),
    (lambda: build_discriminator({"name": "mlp", "conditioning": "acgan"}, (2,), K), "conditioning"),
    (lambda: build_discriminator({"name": "dcgan", "num_classes": 3}, (1, 28, 28)), "unknown key"),
])
def test_bad_conditional_options_are_config_errors(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_conditional_norm_without_classes_is_plain_batchnorm():
    """model.conditional auto on unlabelled data: a conditional preset's G trains unconditionally."""
    g = build_generator({"name": "dcgan", "width": 4, "conditional_norm": True}, Z, (1, 28, 28))
    assert g(torch.randn(3, Z)).shape == (3, 1, 28, 28)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())


def test_class_labels():
    assert class_labels(5, None) is None
    assert class_labels(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert class_labels(6, 10, per_row=2).tolist() == [0, 0, 1, 1, 2, 2]
    assert class_labels(9, 2, per_row=3).tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0]


def test_unlabelled_dataset_is_a_config_error(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    cfg = make_cfg(TINY, "data.name=folder", f"data.root={folder}", "data.resolution=28", "data.limit=null",
                   "train.batch_size=2", "model.conditional=true")
    with pytest.raises(ConfigError, match="model.conditional needs a labelled dataset; folder has no labels"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    """3 steps of a conditional DCGAN with DiffAugment; grids of 3 x 3, one class per row."""
    cfg = make_cfg(TINY, *COND, "train.steps=3", "log.every=1", "log.grid=3", "log.sample_every=0",
                   "eval.every=3", "eval.metrics=[class_agreement]", "eval.num=20")
    return train(cfg, tmp_path_factory.mktemp("cond") / "run")


def test_conditional_run_trains_and_records_its_classes(cond_run):
    assert cond_run.step == 3 and np.isfinite(cond_run.last["loss_d"])
    state, meta = load_checkpoint(cond_run.checkpoint)
    assert meta["num_classes"] == 10
    assert state["d"]["projection.embed.weight"].shape[0] == 10
    with Image.open(cond_run.run_dir / "samples" / "step_000003.png") as img:
        assert img.size == (4 * (3 * 30 + 2),) * 2  # upscaled 4x, as `gankit sample` writes grids
    # in-training evaluation samples balanced classes and measures the agreement
    rows = [json.loads(line) for line in (cond_run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert 0.0 <= [r for r in rows if "eval/class_agreement" in r][0]["eval/class_agreement"] <= 1.0


def test_sampling_a_class(cond_run, tmp_path):
    gen = load_generator(cond_run.run_dir)
    assert gen.num_classes == 10
    sevens = gen.sample(4, seed=1, labels=7)
    assert torch.equal(sevens, gen.sample(4, seed=1, labels=torch.full((4,), 7)))
    assert not torch.equal(sevens, gen.sample(4, seed=1, labels=2))
    # the default cycles through the classes
    assert torch.equal(gen.sample(12, seed=0), gen.sample(12, seed=0, labels=torch.arange(12) % 10))
    with pytest.raises(ValueError, match="out of range"):
        gen.sample(2, labels=10)
    with pytest.raises(ValueError, match="class indices"):
        gen.sample(2, labels=torch.tensor([0, 11]))


def test_npz_and_grids_of_a_conditional_run(cond_run, tmp_path):
    gen = load_generator(cond_run.run_dir)
    with np.load(write_samples(gen, 12, tmp_path / "all.npz", seed=3)) as npz:
        assert npz["labels"].dtype == np.int64 and npz["labels"].tolist() == [i % 10 for i in range(12)]
        expected = gen.to_uint8(gen.sample(12, seed=3)).permute(0, 2, 3, 1).numpy()
        assert np.array_equal(npz["images"], expected)
    with np.load(write_samples(gen, 5, tmp_path / "three.npz", class_index=3)) as npz:
        assert npz["labels"].tolist() == [3] * 5
    # a .png grid: row i is class i
    grid = write_samples(gen, 6, tmp_path / "g.png", nrow=2, seed=0)
    rows = gen.to_uint8(gen.sample(6, seed=0, labels=torch.tensor([0, 0, 1, 1, 2, 2])))
    with Image.open(grid) as img:
        arr = np.asarray(img)
    assert np.array_equal(arr[32:60, 2:30], rows[2, 0].numpy())  # row 1, column 0: class 1


def test_a_grid_of_a_conditional_run_shows_every_class_one_per_column(cond_run, tmp_path, capsys):
    """64 samples of 10 classes: columns 0-9 are classes 0-9 (a square grid's rows showed classes 0-7 only)."""
    gen = load_generator(cond_run.run_dir)
    assert main(["sample", str(cond_run.run_dir), "--num", "64", "--out", str(tmp_path / "g.png"), "--scale", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith("g.png: its 10 classes in turn (column j is class j; --class N "
                                                    "draws one)")
    expected = gen.to_uint8(gen.sample(64, seed=0, labels=torch.arange(64) % 10))
    with Image.open(tmp_path / "g.png") as img:
        arr = np.asarray(img)
    assert arr.shape[:2] == (7 * 30 + 2, 10 * 30 + 2)  # 10 columns, 7 rows (the last holds 4)
    for j in range(10):  # row 0: one sample of every class
        assert np.array_equal(arr[2:30, 2 + 30 * j:30 + 30 * j], expected[j, 0].numpy())
    assert not arr[7 * 30 - 28:, 4 * 30 + 2:].any()  # the last row ends after class 3
    # fewer samples than classes: a square grid of the first ones, as before
    assert main(["sample", str(cond_run.run_dir), "--num", "4", "--out", str(tmp_path / "s.png"), "--scale", "1"]) == 0


def test_sample_class_on_the_command_line(cond_run, trained_run, tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert main(["sample", str(cond_run.run_dir), "--num", "4", "--class", "9", "--out", str(out)]) == 0
    assert "4 samples of class 9" in capsys.readouterr().out
    with np.load(out) as npz:
        assert npz["labels"].tolist() == [9, 9, 9, 9] and npz["images"].shape == (4, 28, 28, 1)
    assert main(["sample", str(cond_run.run_dir), "--class", "10", "--out", str(tmp_path / "x.png")]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["sample", str(trained_run.run_dir), "--class", "1", "--out", str(tmp_path / "y.png")]) == 2
    assert "not class-conditional" in capsys.readouterr().err
    with np.load(write_samples(load_generator(trained_run.run_dir), 2, tmp_path / "u.npz")) as npz:
        assert list(npz.keys()) == ["images"]  # unconditional runs write no labels


def test_class_agreement_metric(cond_run, tmp_path):
    from gankit.data.bundled import shuffled_mnist10k
    from gankit.metrics.api import calculate_metrics, default_metrics
    from gankit.metrics.errors import EvalError
    from gankit.metrics.features import get_extractor

    images, labels = shuffled_mnist10k()
    x = torch.from_numpy(images[:300]).unsqueeze(1)
    y = torch.from_numpy(labels[:300].astype(np.int64))
    real = calculate_metrics(x, "mnist10k", metrics=["class_agreement"], labels=y)
    assert real["class_agreement"] > 0.95 and real["class_agreement_min"] > 0.8  # the classifier on real digits
    wrong = calculate_metrics(x, "mnist10k", metrics=["class_agreement"], labels=(y + 1) % 10)
    assert wrong["class_agreement"] < 0.05
    assert real["info"]["num_reference"] is None  # it reads no reference data
    # a conditional run is sampled with known labels (balanced), and the default metrics then include it
    result = calculate_metrics(cond_run.run_dir, "mnist10k", num=50, metrics=["class_agreement"])
    assert 0.0 <= result["class_agreement_min"] <= result["class_agreement"] <= 1.0
    extractor = get_extractor("mnist-cnn")
    assert default_metrics(extractor, labelled=True)[-2:] == ("classes", "class_agreement")
    assert "class_agreement" not in default_metrics(extractor)
    with pytest.raises(EvalError, match="needs the class each sample was generated for"):
        calculate_metrics(x, "mnist10k", metrics=["class_agreement"])


def test_conditional_augmented_resume_is_bit_exact(tmp_path):
    cfg = make_cfg(TINY, *COND, "train.steps=6", "checkpoint.every=3", "log.sample_every=0", "log.every=2")
    straight = train(cfg, tmp_path / "straight")
    run = tmp_path / "run"
    first = train(make_cfg(cfg, "train.steps=3"), run)
    assert first.step == 3
    second = train(cfg, run, resume=True)
    assert second.step == 6
    (a, meta_a), (b, meta_b) = load_checkpoint(second.checkpoint), load_checkpoint(straight.checkpoint)
    for key in ("g", "d", "g_ema", "opt_g", "opt_d", "rng"):
        assert_states_equal(a[key], b[key], key)
    assert meta_a["data"] == meta_b["data"] and meta_a["num_classes"] == 10
    assert CheckpointDir(run / "checkpoints").latest() == second.checkpoint
