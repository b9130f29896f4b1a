"""gankit.bench: the benchmark runner end to end, with budgets scaled down to seconds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_RING, make_cfg
from gankit.bench import BENCHMARKS, bench, format_table, remove_previous_run, summarise
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


def test_bench_never_deletes_a_held_run_directory_or_files_no_run_wrote(tmp_path, capsys):
    """Issue 27, defect 1: bench replaced <out-dir>/<bench>-seed<N> with rmtree, without the run lock and
    whatever it held."""
    run = tmp_path / "B" / "ring-seed0"
    run.mkdir(parents=True)
    (run / "precious.txt").write_text("x")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep
           + os.environ.get("PYTHONPATH", "")}
    hold = "import sys, time; from gankit.runlock import RunLock; RunLock(sys.argv[1]).acquire(); print('held', " \
           "flush=True); time.sleep(300)"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run)], env=env, stdout=subprocess.PIPE)
    argv = ["bench", "ring", "--time-scale", "0.01", "--out-dir", str(tmp_path / "B")]
    try:
        assert holder.stdout.readline() == b"held\n"
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"gankit: error: bench: the run directory {run} is in use by another gankit process; wait "
                       "until it ends, or choose another --out-dir"], err
    finally:
        holder.kill()
        holder.wait()
    assert main(argv) == 2  # free now, but it holds a file no run writes
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{run / 'precious.txt'} was not written by a gankit run" in err[0], err
    assert sorted(p.name for p in run.iterdir()) == ["precious.txt"] and (run / "precious.txt").read_text() == "x"


def test_an_earlier_run_is_replaced_but_a_file_added_to_it_is_kept(tmp_path):
    from gankit.train import TrainError, train

    run = tmp_path / "ring-seed0"
    train(make_cfg(TINY_RING, "log.tensorboard=true", "log.plot=true", "log.sample_every=5", "checkpoint.every=5"),
          run)
    (run / "checkpoints" / ".step_00000015.safetensors.k3j_9xz0.tmp").write_bytes(b"killed save")
    (run / "samples" / "notes.txt").write_text("mine")
    with pytest.raises(TrainError, match="notes.txt was not written by a gankit run"):
        remove_previous_run(run)
    assert (run / "samples" / "notes.txt").is_file() and (run / "checkpoints" / "latest.json").is_file()
    (run / "samples" / "notes.txt").unlink()
    remove_previous_run(run)  # everything left is a run's own output
    assert not run.exists()
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(TrainError, match="not the folder of an earlier benchmark run"):
        remove_previous_run(tmp_path / "link")
