"""Self-conditioning (model.self_condition): k-means, cluster matching, prior-following labels, training
on D's clusters, bit-exact resume across a reclustering, and samplers that draw clusters by their share."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY, assert_states_equal, make_cfg, step_game
from gankit.checkpoint import load_checkpoint
from gankit.cli import main
from gankit.clustering import (discriminator_features, kmeans, match_ids, nearest, principal_components, prior_labels,
                               prior_rows)
from gankit.config import ConfigError, from_dict
from gankit.models import build_discriminator
from gankit.sampling import load_generator
from gankit.train import prepare, train

SELF = ["model.self_condition=4", "model.recluster_every=3", "train.steps=8", "checkpoint.every=4"]


def test_kmeans_finds_separated_blobs():
    gen = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = torch.arange(3).repeat_interleave(200)
    x = centers[truth] + 0.5 * torch.randn(600, 2, generator=gen)
    c = kmeans(x, 3, 20, torch.Generator().manual_seed(1))
    found = nearest(x, c)
    # every blob is one cluster and no two blobs share one
    assert all(len(found[truth == b].unique()) == 1 for b in range(3))
    assert len(found.unique()) == 3
    assert torch.allclose(c[found[::200]], centers, atol=0.2)


def test_principal_components_match_an_exact_svd():
    gen = torch.Generator().manual_seed(0)
    # a spectrum with clear gaps: the randomised SVD must find the same top subspace as a full SVD
    scales = torch.cat([torch.linspace(10.0, 5.0, 6), torch.full((34,), 0.1)])
    x = (torch.randn(2000, 40, generator=gen) * scales) @ torch.linalg.qr(torch.randn(40, 40, generator=gen)).Q
    x = x + 3.0
    mean, directions = principal_components(x, 6, torch.Generator().manual_seed(1))
    assert torch.allclose(mean, x.mean(0))
    assert torch.allclose(directions.T @ directions, torch.eye(6), atol=1e-4)
    exact = torch.linalg.svd(x - x.mean(0), full_matrices=False).Vh[:6].T
    # the same subspace: projecting one basis onto the other loses nothing
    assert torch.allclose((exact.T @ directions).norm(dim=0), torch.ones(6), atol=1e-3)


def test_match_ids_undoes_a_permutation_of_the_old_ids():
    gen = torch.Generator().manual_seed(0)
    old = torch.randint(5, (500,), generator=gen)
    relabel = torch.tensor([3, 0, 4, 1, 2])
    new = relabel[old]
    new[:20] = 0  # some images change cluster: the matching follows the majority
    perm = match_ids(new, old, 5)
    assert sorted(perm.tolist()) == list(range(5))
    assert (perm[new] == old)[20:].all()


def test_prior_labels_follow_the_prior_without_randomness():
    prior = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    labels = prior_labels(1000, prior)
    assert torch.equal(labels, prior_labels(1000, prior))
    counts = torch.bincount(labels, minlength=5).float()
    assert (counts - 1000 * prior).abs().max() <= 2  # a low-discrepancy sequence: off by a count or two
    assert counts[4] == 0
    assert len(prior_labels(10, prior).unique()) >= 3  # neighbouring samples take different clusters


def test_a_grid_shows_one_cluster_per_row_drawn_by_share_not_only_the_first_clusters():
    prior = torch.full((50,), 1 / 50)
    labels = prior_rows(100, prior, per_row=10)
    rows = labels.view(10, 10)
    assert (rows == rows[:, :1]).all()  # one cluster per row
    assert len(rows[:, 0].unique()) == 10 and rows[:, 0].max() >= 10  # ten clusters, spread over all fifty
    assert torch.equal(prior_rows(7, prior, per_row=1), prior_labels(7, prior))
    assert len(prior_rows(7, prior, per_row=3)) == 7


def test_discriminator_features_need_a_projection_and_ignore_labels():
    d = build_discriminator({"name": "dcgan", "width": 4}, (1, 28, 28), num_classes=3)
    x = torch.randn(5, 1, 28, 28)
    f = discriminator_features(d, x)
    assert f.shape[0] == 5 and torch.allclose(f.norm(dim=1), torch.ones(5))
    assert d.training  # back in the mode it was in
    concat = build_discriminator({"name": "dcgan", "width": 4, "conditioning": "concat"}, (1, 28, 28),
                                 num_classes=3)
    with pytest.raises(ValueError, match="projection"):
        discriminator_features(concat, x)


def test_self_conditioned_training_clusters_reclusters_and_samples_by_share(tmp_path):
    result = train(make_cfg(TINY, *SELF), tmp_path / "run")
    state, meta = load_checkpoint(result.checkpoint)
    clusters = state["clusters"]
    assert meta["num_classes"] == 4 and clusters["labels"].shape == (256,)
    prior = clusters["prior"]
    assert torch.allclose(prior.sum(), torch.tensor(1.0))
    assert torch.allclose(prior, torch.bincount(clusters["labels"], minlength=4).float() / 256)
    gen = load_generator(tmp_path / "run")
    assert gen.self_conditioned and torch.equal(gen.prior, prior)
    labels = gen.labels(400)
    counts = torch.bincount(labels, minlength=4).float()
    assert (counts - 400 * prior).abs().max() <= 2
    # the .npz names them clusters, so `gankit eval` never takes them for the dataset's classes
    out = tmp_path / "s.npz"
    assert main(["sample", str(tmp_path / "run"), "--num", "8", "--out", str(out)]) == 0
    with np.load(out) as f:
        assert set(f.files) == {"images", "clusters"}


def test_self_conditioned_resume_is_bit_exact_across_a_reclustering(tmp_path):
    straight = train(make_cfg(TINY, *SELF), tmp_path / "straight")
    run = tmp_path / "run"
    first = train(make_cfg(TINY, *SELF, "train.steps=3"), run)  # stops where the next reclustering is due
    assert first.step == 3
    second = train(make_cfg(TINY, *SELF), run, resume=True)
    assert second.step == 8
    (a, _), (b, _) = load_checkpoint(second.checkpoint), load_checkpoint(straight.checkpoint)
    for key in ("g", "d", "g_ema", "opt_g", "opt_d", "rng", "clusters"):
        assert_states_equal(a[key], b[key], key)


def test_reclustering_moves_with_d_and_keeps_ids(tiny_cfg):
    trainer = prepare(from_dict(make_cfg(tiny_cfg, *SELF)))
    assert trainer.recluster_due(0)
    trainer.recluster(0)
    first = trainer.clusters.labels.clone()
    assert torch.equal(trainer.stream.source.labels, first)  # the real batches carry their clusters
    _, y = trainer.stream.next()
    assert y is not None and int(y.max()) < 4
    for _ in range(3):
        step_game(trainer, 8)
    assert trainer.recluster_due(3)
    trainer.recluster(3)
    # D has changed, so some images move, but the ids follow the old clusters they overlap most
    assert (trainer.clusters.labels == first).float().mean() > 1 / 4


def test_no_reclustering_in_the_last_interval(tiny_cfg):
    trainer = prepare(from_dict(make_cfg(tiny_cfg, *SELF)))  # every 3 of 8 steps
    trainer.recluster(0)
    due = [trainer.recluster_due(step) for step in range(1, 9)]
    # step 6 would leave G 2 steps to learn the new clusters
    assert [s for s, d in zip(range(1, 9), due) if d] == [3]


@pytest.mark.parametrize("extra, message", [
    (["model.conditional=true"], "model.conditional: false"),
    (["model.pack=2", "model.discriminator={name: mlp, widths: [32]}"], "cannot be combined"),
    (["model.self_condition=1000"], "fewer clusters"),
])
def test_self_condition_config_errors(tiny_cfg, extra, message):
    with pytest.raises(ConfigError, match=message):
        prepare(from_dict(make_cfg(tiny_cfg, "model.self_condition=4", *extra)))


def _digit_folder(root, n):
    from PIL import Image

    from gankit.data.bundled import load_mnist10k_arrays

    images, _ = load_mnist10k_arrays()
    root.mkdir()
    for i in range(n):
        Image.fromarray(images[i]).save(root / f"{i:04d}.png")
    return root


@pytest.mark.parametrize("images, clusters", [(120, 4), (60, 3), (39, 0)])
def test_conditional_auto_self_conditions_unlabelled_images_with_clusters_the_data_fills(tmp_path, capsys, images,
                                                                                        clusters):
    """The default's rule: labels where the data has them, else self-conditioning, one cluster per 20 images
    at most (a small folder gets fewer, a tiny one none)."""
    root = _digit_folder(tmp_path / "digits", images)
    cfg = make_cfg(TINY, "data.name=folder", f"data.root={root}", "data.limit=null", "model.conditional=auto",
                   "model.self_condition=4", "model.recluster_every=2", "train.steps=3")
    train(cfg, tmp_path / "run")
    err = capsys.readouterr().err
    _, meta = load_checkpoint(next((tmp_path / "run" / "checkpoints").glob("step_*.safetensors")))
    model = meta["config"]["model"]
    assert model["conditional"] is False and model["self_condition"] == clusters
    assert model["recluster_every"] == (2 if clusters else 0)
    if clusters == 4:
        assert "self-conditioned on 4 clusters of D's features (no labels) |" in err
    elif clusters:
        assert f"self-conditioned on {clusters} clusters of D's features (no labels, fewer than the 4 asked" in err
    else:
        assert "params, unconditional |" in err
    assert load_generator(tmp_path / "run").self_conditioned == bool(clusters)


def test_conditional_auto_with_labels_ignores_self_condition(tmp_path, capsys):
    cfg = make_cfg(TINY, "model.conditional=auto", "model.self_condition=4", "model.recluster_every=2",
                   "train.steps=2")
    trainer = prepare(from_dict(cfg))
    assert trainer.cfg.model.conditional is True and trainer.cfg.model.self_condition == 0
    assert trainer.clusters is None and trainer.num_classes == 10
    assert trainer.conditioning == "conditional on 10 classes (the data's labels)"
