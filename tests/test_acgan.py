"""ACGAN: a D with an auxiliary classifier head, its class losses, and the preset."""
from __future__ import annotations

import pytest
import torch

from conftest import TINY, make_cfg
from gankit.config import ConfigError, from_dict
from gankit.models.dcgan import DCGANDiscriminator
from gankit.objectives import build_objective, split_aux
from gankit.train import prepare, train


@pytest.mark.parametrize("head", ["conv", "fc"])
def test_an_acgan_discriminator_outputs_a_logit_and_class_logits(head):
    d = DCGANDiscriminator((1, 28, 28), 10, width=8, head=head, fc_hidden=[16], conditioning="acgan")
    out = d(torch.randn(5, 1, 28, 28), torch.arange(5))
    assert out.shape == (5, 11)
    logit, classes = split_aux(out)
    assert logit.shape == (5,) and classes.shape == (5, 10)
    assert d.projection is None  # the label reaches D's loss through the classifier, not its input


def test_acgan_losses_add_the_class_cross_entropy():
    d = DCGANDiscriminator((1, 28, 28), 10, width=8, conditioning="acgan")
    real, fake, y = torch.rand(6, 1, 28, 28), torch.rand(6, 1, 28, 28), torch.arange(6) % 10
    with_aux = build_objective(from_dict({"objective": {"name": "ns", "aux_weight": 1.0}}).objective)
    without = build_objective(from_dict({"objective": {"name": "ns", "aux_weight": 0.0}}).objective)
    loss_d, stats = with_aux.discriminator_loss(d, real, fake, y)
    base_d, _ = without.discriminator_loss(d, real, fake, y)
    out_r, out_f = d(real, y), d(fake, y)
    ce = torch.nn.functional.cross_entropy
    assert loss_d.item() == pytest.approx(base_d.item() + ce(out_r[:, 1:], y).item() + ce(out_f[:, 1:], y).item(),
                                          rel=1e-5)
    assert {"aux_d", "aux_acc_real"} <= set(stats)
    loss_g, g_stats = with_aux.generator_loss(d, fake, y)
    assert loss_g.item() == pytest.approx(g_stats["loss_g"].item() + ce(out_f[:, 1:], y).item(), rel=1e-5)
    with pytest.raises(ConfigError, match="model.conditional"):
        with_aux.discriminator_loss(d, real, fake, None)


def test_acgan_trains_and_its_classifier_learns_the_real_digits(tmp_path):
    cfg = make_cfg(TINY, "model.conditional=true", "model.generator={name: dcgan, width: 8, conditional_norm: true}",
                   "model.discriminator={name: dcgan, width: 8, conditioning: acgan}", "train.steps=60",
                   "train.d_steps=1", "log.every=10", "optim.lr_d=2e-3")
    result = train(cfg, tmp_path / "run")
    import json

    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["aux_acc_real"] > rows[0]["aux_acc_real"]  # D's classifier learns the classes
    assert rows[-1]["aux_d"] < rows[0]["aux_d"]
    assert result.step == 60


def test_the_acgan_preset_builds_a_conditional_g_and_an_acgan_d():
    from gankit.config import load

    trainer = prepare(load("configs/mnist_acgan.yaml", ["train.threads=1"]))
    assert trainer.num_classes == 10 and trainer.d.aux_classes == 10
    assert trainer.d(torch.rand(2, 1, 28, 28), torch.tensor([1, 2])).shape == (2, 11)


def test_only_the_dcgan_discriminator_offers_acgan():
    with pytest.raises(ConfigError, match="conditioning"):
        prepare(from_dict(make_cfg(TINY, "model.conditional=true",
                                   "model.discriminator={name: mlp, widths: [16], conditioning: acgan}")))


def _digit_folder(root, n=40):
    from PIL import Image

    from gankit.data.bundled import load_mnist10k_arrays

    images, _ = load_mnist10k_arrays()
    root.mkdir()
    for i in range(n):
        Image.fromarray(images[i]).save(root / f"{i}.png")
    return root


def test_conditional_auto_uses_labels_when_the_data_has_them(tmp_path):
    import yaml

    from gankit.sampling import load_generator

    gen_args = "model.generator={name: dcgan, width: 8, conditional_norm: true}"
    d_args = "model.discriminator={name: dcgan, width: 8, conditioning: projection}"
    labelled = make_cfg(TINY, "model.conditional=auto", gen_args, d_args, "train.steps=4")
    train(labelled, tmp_path / "digits")
    assert yaml.safe_load((tmp_path / "digits" / "config.yaml").read_text())["model"]["conditional"] is True
    assert load_generator(tmp_path / "digits").num_classes == 10
    # resuming the same YAML (still "auto") continues: the checkpoint holds the resolved value
    train(make_cfg(labelled, "train.steps=6"), tmp_path / "digits", resume=True)
    folder = _digit_folder(tmp_path / "pngs")
    unlabelled = make_cfg(labelled, "data.name=folder", f"data.root={folder}", "data.resolution=28",
                          "data.channels=1", "data.limit=null")
    train(unlabelled, tmp_path / "folder")
    assert yaml.safe_load((tmp_path / "folder" / "config.yaml").read_text())["model"]["conditional"] is False
    gen = load_generator(tmp_path / "folder")
    assert gen.num_classes is None and gen.sample(3).shape == (3, 1, 28, 28)


def test_conditional_takes_true_false_or_auto_only():
    with pytest.raises(ConfigError, match="model.conditional"):
        from_dict(make_cfg(TINY, "model.conditional=sometimes"))
