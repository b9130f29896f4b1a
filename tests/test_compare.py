"""gankit compare: fresh samples of several runs side by side in one PNG, their metrics in one table."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, TINY_RING, make_cfg
from gankit.checkpoint import CheckpointDir
from gankit.cli import main
from gankit.compare import GAP
from gankit.logs import read_metrics
from gankit.metrics.api import calculate_metrics
from gankit.sampling import load_generator, write_samples


@pytest.fixture(scope="module")
def second_run(tmp_path_factory):
    """Another tiny run, also in a folder named `run` (so the two are labelled by path), with in-training
    evaluations in its metrics.jsonl."""
    from gankit.train import train

    run_dir = tmp_path_factory.mktemp("second") / "run"
    return train(make_cfg(TINY, "train.seed=1", "train.steps=12", "eval.every=6", "eval.num=50",
                          "eval.metrics=[fid]"), run_dir)


@pytest.fixture(scope="module")
def ring_runs(tmp_path_factory):
    from gankit.train import train

    root = tmp_path_factory.mktemp("rings")
    rings = [train(make_cfg(TINY_RING, f"train.steps={n}"), root / f"ring{n}").run_dir for n in (10, 20)]
    return rings + [train(make_cfg(TINY_RING, "data.name=grid"), root / "grid").run_dir]


def test_compare_puts_fresh_samples_side_by_side_and_the_logged_values_in_one_table(
        tmp_path, capsys, trained_run, second_run):
    runs = [str(trained_run.run_dir), str(second_run.run_dir)]
    out, js = tmp_path / "both.png", tmp_path / "both.json"
    assert main(["compare", *runs, "--out", str(out), "--samples", "16", "--json", str(js)]) == 0
    printed = capsys.readouterr().out
    header, *rows = printed.split("\n", 1)[1].splitlines()
    assert runs[0] in header and runs[1] in header  # two folders named `run`: labelled by their paths
    table = {r.split()[0]: r.split()[1:] for r in rows if not r.startswith("gankit:")}
    assert table["step"] == [str(trained_run.step), str(second_run.step)]
    last = [[r for r in read_metrics(run / "metrics.jsonl") if "loss_d" in r][-1]
            for run in (trained_run.run_dir, second_run.run_dir)]
    assert table["loss_d"] == [f"{row['loss_d']:.5g}" for row in last]
    evals = [r for r in read_metrics(second_run.run_dir / "metrics.jsonl") if "eval/fid" in r]
    assert table["eval/fid"] == ["-", f"{evals[-1]['eval/fid']:.5g}"]  # the first run never evaluated
    saved = json.loads(js.read_text())
    assert saved["grid"] == str(out) and [r["step"] for r in saved["runs"]] == [trained_run.step, second_run.step]
    assert saved["runs"][1]["logged"]["eval/fid"] == evals[-1]["eval/fid"]

    # each panel is exactly `gankit sample RUN --num 16 --seed 0`, under a label band, GAP pixels apart
    grid = np.asarray(Image.open(out))
    x = 0
    for run in (trained_run.run_dir, second_run.run_dir):
        alone = np.asarray(Image.open(write_samples(load_generator(run), 16, tmp_path / "alone.png", scale=4)))
        h, w = alone.shape
        band = grid.shape[0] - h
        assert band > 20 and (grid[:band, x:x + w] < 128).any()  # the label's text
        assert (grid[band:, x:x + w] == alone[..., None]).all()
        x += w + GAP
    assert grid.shape[1] == x - GAP


def test_compare_eval_measures_every_run_as_eval_does(tmp_path, capsys, trained_run, second_run):
    runs = [trained_run.run_dir, second_run.run_dir]
    assert main(["compare", *map(str, runs), "--eval", "--num", "60", "--metrics", "fid",
                 "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "--eval: 60 samples of each run vs mnist10k (train), features mnist-cnn" in out
    saved = json.loads((tmp_path / "e.json").read_text())
    for run, entry in zip(runs, saved["runs"]):
        alone = calculate_metrics(run, "mnist10k", metrics=["fid"], num=60, seed=0)
        assert entry["eval"]["fid"] == pytest.approx(alone["fid"], rel=1e-9)
        assert f"{alone['fid']:.5g}" in [line.split()[i] for line in out.splitlines() if line.startswith("fid ")
                                          for i in (1, 2)]


def test_compare_draws_2d_runs_as_scatter_plots_side_by_side(tmp_path, capsys, ring_runs):
    out = tmp_path / "rings.png"
    assert main(["compare", *map(str, ring_runs[:2]), "--out", str(out)]) == 0
    assert "ring10" in capsys.readouterr().out
    w, h = Image.open(out).size
    assert w > 1.5 * h  # two square plots in a row


def _fake_translation_run(root):
    """A run directory whose checkpoint is of the pix2pix game (only its metadata matters here)."""
    meta = {"game": "pix2pix", "config": {"data": {"name": "mnist10k"}}, "step": 3, "data_shape": [1, 28, 28]}
    CheckpointDir(root / "checkpoints").save(3, {"g": {"w": torch.zeros(1)}}, meta)
    return root


@pytest.mark.parametrize("case, message", [
    ("missing", "compare: no such run directory: "),
    ("not a run", "is not a gankit run directory (it has no checkpoints/ folder)"),
    ("a file", "is a file, not a run directory"),
    ("no checkpoint", "has no checkpoint yet"),
    ("one run", "compare needs at least two runs, got 1"),
    ("points and images", "trained on 2D points and the others on images"),
    ("num without eval", "--num sets how --eval measures the runs; add --eval"),
    ("not png", "--out must end in .png, got"),
    ("other data", "compare --eval: the runs were trained on different data (grid, ring); name the one"),
    ("translation", "is a pix2pix run: it translates images"),
    ("device", "--device: unknown device 'gpu'"),
])
def test_compare_refuses_with_one_line(case, message, tmp_path, capsys, trained_run, ring_runs):
    run = str(trained_run.run_dir)
    (tmp_path / "empty").mkdir()
    (tmp_path / "nockpt" / "checkpoints").mkdir(parents=True)
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "grid.png"
    argv = {
        "missing": [run, str(tmp_path / "nope")],
        "not a run": [run, str(tmp_path / "empty")],
        "a file": [run, str(tmp_path / "file.txt")],
        "no checkpoint": [run, str(tmp_path / "nockpt")],
        "one run": [run],
        "points and images": [run, str(ring_runs[0])],
        "num without eval": [run, run, "--num", "5"],
        "not png": [run, run, "--out", str(tmp_path / "grid.jpg")],
        "other data": [str(ring_runs[0]), str(ring_runs[2]), "--eval"],
        "translation": [run, str(_fake_translation_run(tmp_path / "p2p"))],
        "device": [run, run, "--device", "gpu"],
    }[case]
    assert main(["compare", *argv, "--out", str(out)] if "--out" not in argv else ["compare", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("gankit: error:") and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_compare_accepts_a_run_copied_elsewhere(tmp_path, capsys, trained_run):
    """A run directory is self-contained: a copy compares like the original (same samples, same table)."""
    copy = tmp_path / "copy"
    shutil.copytree(trained_run.run_dir, copy)
    assert main(["compare", str(trained_run.run_dir), str(copy)]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert all(len(set(r.split()[-2:])) == 1 for r in rows if r.split()[0] in ("step", "loss_d", "d_fake"))
