"""gankit.evaluator: in-training evaluation (``eval.every``). Its scalars are what metrics.jsonl records and
the health alarm reads; an unknown metric name fails before the run writes anything; evaluating draws from
streams of its own, so a run with evaluations trains exactly as one without."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import TINY_RING, assert_states_equal, make_cfg
from gankit.checkpoint import load_checkpoint
from gankit.cli import main
from gankit.config import ConfigError
from gankit.evaluator import scalars
from gankit.logs import read_metrics
from gankit.metrics.api import calculate_metrics
from gankit.train import train

EVAL = ["train.steps=4", "log.every=2", "eval.every=2", "eval.num=200", "eval.metrics=[modes2d, fid]"]


def test_scalars_flattens_a_result_to_finite_floats_and_adds_class_coverage():
    result = {
        "fid": 12, "kid": 0.25, "kid_std": 0.5, "classes_present": 8, "num_classes": 10, "min_share": 0.0,
        "class_shares": [0.1] * 10,  # a list: no scalar
        "reverse_kl": math.nan,  # undefined (no mode captured): left out, not logged as NaN
        "class_kl": math.inf,  # infinite is a value (a class the reference lacks)
        "converged": True,  # a flag, not a measurement
        "knn": {"precision": 0.5, "k": 3, "note": "text"},
        "info": {"num": 2000, "seconds": 1.5, "reference": "mnist10k"},
    }
    out = scalars(result)
    assert out == {"fid": 12.0, "kid": 0.25, "kid_std": 0.5, "classes_present": 8.0, "num_classes": 10.0,
                   "min_share": 0.0, "class_kl": math.inf, "knn_precision": 0.5, "knn_k": 3.0,
                   "class_coverage": 0.8}
    assert all(type(v) is float for v in out.values())
    assert "class_coverage" not in scalars({"classes_present": 3, "num_classes": 0})  # no division by zero
    assert scalars({"info": {"num": 1}}) == {}


def test_scalars_of_a_real_evaluation():
    points = torch.randn(300, 2, generator=torch.Generator().manual_seed(0)) * 0.02 + torch.tensor([1.0, 0.0])
    result = calculate_metrics(points, "ring", metrics=("modes2d", "fid"), num=300)
    out = scalars(result)
    assert out["modes"] == 1.0 and out["num_modes"] == 8.0  # one mode of the ring's eight
    assert out["fid"] == result["fid"] > 0 and "info" not in out
    assert set(out) == {k for k, v in result.items() if k != "info" and isinstance(v, (int, float))
                        and not math.isnan(v)}


@pytest.mark.parametrize("metric, hint", [("fdi", "did you mean 'fid'?"), ("modes", "did you mean 'modes2d'?")])
def test_an_unknown_metric_fails_before_the_run_writes_anything(tmp_path, metric, hint):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match="eval.metrics: unknown metric") as info:
        train(make_cfg(TINY_RING, *EVAL, f"eval.metrics=[fid, {metric}]"), run_dir)
    assert hint in str(info.value) and "choices: " in str(info.value)
    assert not run_dir.exists()


def test_the_cli_reports_an_unknown_metric_in_one_line(tmp_path, capsys):
    assert main(["train", "ring", "--steps", "2", "--run-dir", str(tmp_path / "run"), "--device", "cpu",
                 "--set", "log.progress=false", "eval.every=1", "eval.metrics=[fid, presicion]"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gankit: error: config: eval.metrics: unknown metric 'presicion'")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def _losses(run_dir):
    return [{k: v for k, v in row.items() if k not in ("seconds", "img_per_s")}
            for row in read_metrics(run_dir / "metrics.jsonl") if "loss_d" in row]


def test_evaluations_are_logged_and_leave_training_as_it_was(tmp_path):
    with_eval = train(make_cfg(TINY_RING, *EVAL), tmp_path / "a")
    without = train(make_cfg(TINY_RING, *EVAL, "eval.every=0"), tmp_path / "b")
    evals = [row for row in read_metrics(with_eval.run_dir / "metrics.jsonl") if "eval/fid" in row]
    assert [row["step"] for row in evals] == [2, 4]
    assert all(row["eval/num_modes"] == 8 and row["eval/fid"] > 0 for row in evals)
    assert not any(k.startswith("eval/") for row in read_metrics(without.run_dir / "metrics.jsonl") for k in row)
    # the evaluation latents are a stream of their own: the same losses and the same weights either way
    assert _losses(with_eval.run_dir) == _losses(without.run_dir)
    state_a, _ = load_checkpoint(with_eval.checkpoint)
    state_b, _ = load_checkpoint(without.checkpoint)
    assert_states_equal(state_a, state_b)
    # keep_best: the evaluated checkpoint with the lowest FID is kept beside the rotation
    best = min(evals, key=lambda row: row["eval/fid"])
    _, meta = load_checkpoint(with_eval.run_dir / "checkpoints" / "best.safetensors")
    assert meta["step"] == best["step"] and meta["best_fid"] == pytest.approx(best["eval/fid"])
    # a second identical run evaluates the same samples: the same numbers
    again = train(make_cfg(TINY_RING, *EVAL, "train.steps=2"), tmp_path / "c")
    first = [row for row in read_metrics(again.run_dir / "metrics.jsonl") if "eval/fid" in row]
    assert first == evals[:1]
