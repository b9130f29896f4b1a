"""gankit.bench: the benchmark runner end to end, with budgets scaled down to seconds."""
from __future__ import annotations

import json

import pytest

from gankit.bench import BENCHMARKS, bench, format_table, summarise
from gankit.cli import main
from gankit.config import ConfigError

# the mnist10k preset shrunk so a run is a few steps; the metric code path is the real one
TINY_MNIST = ["model.latent_dim=8", "model.generator.width=4", "model.discriminator.width=4",
              "train.batch_size=16", "data.limit=512", "checkpoint.every=100000", "log.tensorboard=false"]


def test_mnist10k_bench_measures_fid_and_classes_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "mnist10k", "--time-scale", "0.01", "--out-dir", str(tmp_path / "runs"),
                 "--json", str(out), "--set", *TINY_MNIST]) == 0
    table = capsys.readouterr().out
    assert "mnist10k  (3 s budget per run, 10000 samples, mean of 1 seed(s))" in table
    assert "gankit" in table and "fid" in table
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert run["steps"] > 0 and run["budget_s"] == pytest.approx(3.0)
    assert run["fid"] > 0 and 1 <= run["classes_present"] <= 10
    assert report["summaries"][0]["fid"] == pytest.approx(run["fid"])
    assert report["runs"][0]["info"]["num"] == 10_000


def test_summary_is_the_mean_over_seeds_and_the_table_shows_the_anchors():
    b = BENCHMARKS["ring"]
    rows = [{"modes": 8, "high_quality": 0.99, "reverse_kl": 0.01, "budget_s": 60},
            {"modes": 7, "high_quality": 0.97, "reverse_kl": 0.03, "budget_s": 60}]
    s = summarise(rows, b)
    assert s["seeds"] == 2 and s["modes"] == 7.5 and s["high_quality"] == pytest.approx(0.98)
    table = format_table([s])
    for anchor in ("PacGAN4", "GDPP", "VEEGAN"):
        assert anchor in table
    assert "7.50" in table or "7.5" in table


def test_unknown_benchmark_is_refused_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'ring'"):
        bench(["rign"], out_dir=tmp_path)


def test_ring_bench_with_drs_adds_a_row(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "ring", "--time-scale", "0.02", "--out-dir", str(tmp_path / "runs"), "--json", str(out),
                 "--drs", "50", "--drs-calibrate", "5", "--set", "model.generator.widths=[16]",
                 "model.discriminator.widths=[16]"]) == 0
    table = capsys.readouterr().out
    assert "gankit + DRS" in table
    (run,) = json.loads(out.read_text())["runs"]
    drs = run["drs"]
    assert drs["percentile"] == 50 and drs["calibrate"] == 5 and 0 < drs["acceptance"] <= 1
    assert 0 <= drs["high_quality"] <= 1 and 0 <= drs["modes"] <= 8
    assert main(["bench", "ring", "--drs-calibrate", "5"]) == 2


def test_ring_bench_with_the_density_filter_adds_a_row(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "ring", "--time-scale", "0.02", "--out-dir", str(tmp_path / "runs"), "--json", str(out),
                 "--density-filter", "--set", "model.generator.widths=[16]",
                 "model.discriminator.widths=[16]"]) == 0
    table = capsys.readouterr().out
    assert "gankit + density" in table and "spread" in table
    (run,) = json.loads(out.read_text())["runs"]
    kept = run["density"]
    assert kept["percentile"] == 5 and 0.9 < kept["acceptance"] <= 1
    assert 0 <= kept["high_quality"] <= 1 and 0 <= kept["modes"] <= 8
    assert main(["bench", "ring", "--density-filter", "--drs"]) == 2
