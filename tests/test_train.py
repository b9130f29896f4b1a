"""gankit.train: the Python API end to end, run directories, and bit-exact resume."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from conftest import SHARED, TINY, assert_states_equal, make_cfg
from gankit.checkpoint import CheckpointDir, load_checkpoint
from gankit.config import ConfigError, from_dict, load
from gankit.data import BatchStream, build_dataset
from gankit.sampling import load_generator
from gankit.train import TrainError, TrainResult, prepare, select_device, total_steps, train


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _final_state(result: TrainResult):
    return load_checkpoint(result.checkpoint)


class StopAfter:
    """A stop flag that asks to stop after ``n`` polls, i.e. after ``n`` training steps."""

    def __init__(self, n: int) -> None:
        self.n, self.polls = n, 0

    @property
    def requested(self) -> bool:
        self.polls += 1
        return self.polls > self.n


# ---------------------------------------------------------------------------------------------
# A normal run


def test_tiny_dcgan_run_trains_and_fills_the_run_directory(trained_run):
    result = trained_run
    run = result.run_dir
    assert result.step == 30 and result.stopped_by == "steps"
    # the generator moved away from its initialisation
    initial = prepare(from_dict(make_cfg(TINY, *SHARED))).g.state_dict()
    state, meta = _final_state(result)
    changed = [k for k, v in initial.items() if v.is_floating_point() and not torch.equal(v, state["g"][k])]
    assert len(changed) == len([v for v in initial.values() if v.is_floating_point()])
    for net in ("g", "d", "g_ema"):
        assert all(torch.isfinite(t).all() for t in state[net].values() if t.is_floating_point())
    # losses are finite and logged every log.every steps
    rows = _rows(run)
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30]
    for row in rows:
        for key in ("loss_d", "loss_g", "d_real", "d_fake"):
            assert torch.isfinite(torch.tensor(row[key]))
        assert 0 <= row["d_real"] <= 1 and 0 <= row["d_fake"] <= 1
        assert row["kimg"] == pytest.approx(row["step"] * 32 * 2 / 1000)
        assert row["img_per_s"] > 0 and row["seconds"] > 0
    assert result.last["loss_d"] == rows[-1]["loss_d"]
    # samples every 15 steps and at the end, checkpoints every 15 and at the end (keep 2)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_000015.png", "step_000030.png"]
    ckpts = CheckpointDir(run / "checkpoints")
    assert [p.name for p in ckpts.all()] == ["step_00000015.safetensors", "step_00000030.safetensors"]
    assert ckpts.latest() == result.checkpoint
    assert meta["step"] == 30 and meta["images_seen"] == 30 * 32 * 2
    assert meta["data_shape"] == [1, 28, 28]
    assert meta["data"] == {"epoch": 7, "index": 4, "seed": 0, "batch_size": 32}  # 60 batches, 8 per epoch
    assert (run / "loss_curves.png").stat().st_size > 0
    assert not (run / "tensorboard").exists()


def test_run_directory_config_is_the_resolved_config(trained_run):
    saved = yaml.safe_load((trained_run.run_dir / "config.yaml").read_text())
    expected = from_dict(make_cfg(TINY, *SHARED))
    assert saved == expected.to_dict()
    assert load(trained_run.run_dir / "config.yaml") == expected
    _, meta = _final_state(trained_run)
    assert meta["config"] == expected.to_dict()


def test_sample_grid_is_a_png_of_grid_by_grid_images(trained_run):
    from PIL import Image

    with Image.open(trained_run.run_dir / "samples" / "step_000030.png") as img:
        # log.grid 2, padding 2, the whole grid upscaled 4x (about 128 px per image, as `gankit sample`)
        assert img.size == (4 * (2 * 28 + 3 * 2),) * 2


def test_train_accepts_a_yaml_path(tmp_path, tiny_yaml):
    result = train(tiny_yaml, tmp_path / "run")
    assert result.step == 4 and result.checkpoint.is_file()
    assert [r["step"] for r in _rows(result.run_dir)] == [2, 4]


def test_tensorboard_and_progress_bar(tmp_path, tiny_cfg, capsys):
    pytest.importorskip("tensorboard")
    cfg = make_cfg(tiny_cfg, "train.steps=2", "log.every=1", "log.sample_every=1", "log.tensorboard=true",
                   "log.progress=true")
    train(cfg, tmp_path / "run")
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert "step" in capsys.readouterr().err  # tqdm writes to stderr


# ---------------------------------------------------------------------------------------------
# Bit-exact resume


# Two architectures, so that every RNG stream matters: dropout in D (the global torch RNG during D and G
# steps), and dropout plus BatchNorm in G (the global RNG whenever G runs in train mode).
ARCHS = {
    "dcgan_g": [],
    "mlp_g": ["model.generator={name: mlp, widths: [32], dropout: 0.2, batchnorm: true}",
              "model.discriminator={name: dcgan, width: 8, dropout: 0.2}"],
}
RESUME = ["checkpoint.every=20", "checkpoint.keep=5", "objective.instance_noise_steps=30"]


@pytest.fixture(scope="module", params=list(ARCHS))
def straight_run(request, tmp_path_factory):
    """40 steps in one go: EMA, k = 2, instance noise, label smoothing and dropout all on; with
    8 batches per epoch and 2 per step, the data stream rolls over into a new epoch every 4 steps."""
    cfg = make_cfg(TINY, "train.steps=40", *RESUME, *ARCHS[request.param])
    return request.param, train(cfg, tmp_path_factory.mktemp("straight") / "run")


def _assert_same_training_state(a, b):
    (state_a, meta_a), (state_b, meta_b) = a, b
    for key in ("g", "d", "g_ema", "opt_g", "opt_d", "rng"):
        assert_states_equal(state_a[key], state_b[key], key)
    for key in ("step", "images_seen", "data", "data_shape"):
        assert meta_a[key] == meta_b[key], key


def test_resume_is_bit_exact(tmp_path, straight_run):
    arch, straight = straight_run
    run = tmp_path / "run"
    cfg = make_cfg(TINY, "train.steps=20", *RESUME, *ARCHS[arch])
    first = train(cfg, run)
    assert first.step == 20
    # the half-way checkpoint equals the straight run's checkpoint at step 20
    _assert_same_training_state(load_checkpoint(first.checkpoint),
                                load_checkpoint(CheckpointDir(straight.run_dir / "checkpoints").path_for(20)))
    second = train(make_cfg(cfg, "train.steps=40"), run, resume=True)
    assert second.step == 40 and second.stopped_by == "steps"
    _assert_same_training_state(_final_state(second), _final_state(straight))
    a, b = _final_state(second)[0], _final_state(straight)[0]
    for key in ("g", "d", "g_ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name}"
    # the logged losses agree too, and the resumed run appended to metrics.jsonl
    strip = ("seconds", "img_per_s")
    rows_a = [{k: v for k, v in r.items() if k not in strip} for r in _rows(run)]
    rows_b = [{k: v for k, v in r.items() if k not in strip} for r in _rows(straight.run_dir)]
    assert rows_a == rows_b and [r["step"] for r in rows_a] == list(range(5, 41, 5))
    # the sampler (EMA) of both runs gives identical samples
    assert torch.equal(load_generator(run).sample(4, seed=1), load_generator(straight.run_dir).sample(4, seed=1))


def test_interrupted_run_resumes_bit_exact(tmp_path, straight_run):
    arch, straight = straight_run
    run = tmp_path / "run"
    cfg = make_cfg(TINY, "train.steps=40", *RESUME, *ARCHS[arch])
    first = train(cfg, run, stop=StopAfter(13))
    assert first.stopped_by == "interrupt" and first.step == 13
    assert first.checkpoint == CheckpointDir(run / "checkpoints").path_for(13)  # saved on interrupt
    second = train(cfg, run, resume=True)
    assert second.step == 40
    _assert_same_training_state(_final_state(second), _final_state(straight))


def test_resume_after_a_crash_logs_every_step_once(tmp_path, straight_run):
    # a run killed after logging steps 25 and 30 (and half a line) but before its next checkpoint
    arch, straight = straight_run
    run = tmp_path / "run"
    cfg = make_cfg(TINY, "train.steps=20", *RESUME, *ARCHS[arch])
    train(cfg, run)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 25, "loss_d": 9.0}\n{"step": 30, "loss_d": 9.0}\n{"step": 3')
    train(make_cfg(cfg, "train.steps=40"), run, resume=True)
    rows = _rows(run)
    assert [r["step"] for r in rows] == list(range(5, 41, 5))
    assert all(r["loss_d"] != 9.0 for r in rows)


def test_resume_with_a_changed_non_resumable_key_is_refused(tmp_path, trained_run):
    run = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run)
    before = sorted(p.name for p in run.rglob("*"))
    cfg = make_cfg(TINY, *SHARED, "train.steps=32", "optim.lr_g=1e-3")
    with pytest.raises(TrainError) as err:
        train(cfg, run, resume=True)
    assert "optim.lr_g" in str(err.value) and "0.001" in str(err.value)
    assert "log.plot" not in str(err.value) and "train.steps" not in str(err.value)
    assert sorted(p.name for p in run.rglob("*")) == before


def test_resume_with_only_resumable_changes_continues(tmp_path, trained_run):
    run = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run)
    cfg = make_cfg(TINY, *SHARED, "train.steps=32", "checkpoint.every=100", "log.sample_every=0",
                   "log.every=1", "train.max_seconds=600", "log.plot=false")
    result = train(cfg, run, resume=True)
    assert result.step == 32 and result.checkpoint.name == "step_00000032.safetensors"
    assert [r["step"] for r in _rows(run)] == [5, 10, 15, 20, 25, 30, 31, 32]


def test_existing_checkpoints_without_resume_are_refused(tmp_path, trained_run):
    run = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run)
    with pytest.raises(TrainError, match="already holds checkpoints.*--resume"):
        train(make_cfg(TINY, "train.steps=2"), run)


def test_resume_without_checkpoint_starts_fresh(tmp_path, tiny_cfg):
    cfg = make_cfg(tiny_cfg, "train.steps=2", "log.every=1")
    fresh = train(cfg, tmp_path / "a")
    resumed = train(cfg, tmp_path / "b", resume=True)
    assert resumed.step == 2
    assert [r["step"] for r in _rows(tmp_path / "b")] == [1, 2]
    _assert_same_training_state(_final_state(resumed), _final_state(fresh))


def test_resume_past_the_target_trains_nothing(tmp_path, trained_run):
    run = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run)
    latest = CheckpointDir(run / "checkpoints").latest()
    mtime = latest.stat().st_mtime_ns
    result = train(make_cfg(TINY, *SHARED), run, resume=True)
    assert result.step == 30 and result.checkpoint == latest
    assert latest.stat().st_mtime_ns == mtime  # not rewritten


# ---------------------------------------------------------------------------------------------
# Stopping


def test_max_seconds_stops_early_and_saves(tmp_path, tiny_cfg):
    cfg = make_cfg(tiny_cfg, "train.steps=100000", "train.max_seconds=0.001")
    result = train(cfg, tmp_path / "run")
    assert result.stopped_by == "max_seconds" and result.step < 100000
    assert result.checkpoint.is_file()
    assert load_checkpoint(result.checkpoint)[1]["step"] == result.step
    assert (tmp_path / "run" / "samples" / f"step_{result.step:06d}.png").is_file()


def test_max_seconds_without_steps(tmp_path, tiny_cfg):
    cfg = make_cfg(tiny_cfg, "train.steps=null", "train.max_seconds=0.001")
    assert train(cfg, tmp_path / "run").stopped_by == "max_seconds"


def test_stop_flag_stops_at_once_and_still_checkpoints(tmp_path, tiny_cfg):
    class Stop:
        requested = True

    result = train(make_cfg(tiny_cfg, "train.steps=50"), tmp_path / "run", stop=Stop())
    assert result.stopped_by == "interrupt" and result.step == 0
    assert result.checkpoint == CheckpointDir(tmp_path / "run" / "checkpoints").path_for(0)
    state, meta = load_checkpoint(result.checkpoint)
    assert meta["step"] == 0 and state["g_ema"] is not None
    # and the run continues from there
    resumed = train(make_cfg(tiny_cfg, "train.steps=1"), tmp_path / "run", resume=True)
    assert resumed.step == 1 and resumed.stopped_by == "steps"


def test_epochs_set_the_number_of_steps(tmp_path, tiny_cfg):
    cfg = from_dict(make_cfg(tiny_cfg, "train.epochs=1.0"))
    stream = BatchStream(build_dataset(cfg.data), 32, 0, torch.device("cpu"))
    assert stream.batches_per_epoch == 8
    assert total_steps(cfg, stream) == 4  # 8 batches, 2 per step (d_steps)
    assert total_steps(from_dict(make_cfg(tiny_cfg, "train.epochs=0.3")), stream) == 2  # ceil(1.2)
    result = train(make_cfg(tiny_cfg, "train.epochs=0.5", "train.steps=1000"), tmp_path / "run")
    assert result.step == 2
    assert load_checkpoint(result.checkpoint)[1]["data"]["index"] == 4


def test_no_stopping_rule_is_a_config_error(tmp_path, tiny_cfg):
    with pytest.raises(ConfigError, match="never stops"):
        train(make_cfg(tiny_cfg, "train.steps=null"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# 2D data, errors before anything is written


def test_ring_training_writes_point_plots(tmp_path, ring_cfg):
    result = train(make_cfg(ring_cfg, "log.sample_every=5"), tmp_path / "run")
    assert result.step == 10
    plots = sorted(p.name for p in (tmp_path / "run" / "samples").iterdir())
    assert plots == ["step_000005.png", "step_000010.png"]
    from PIL import Image

    import numpy as np

    with Image.open(tmp_path / "run" / "samples" / "step_000010.png") as img:
        assert img.size[0] > 100 and img.size[1] > 100
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)
    # the real points in grey and the ring's 8 modes as red crosses under G's samples
    assert (np.abs(pixels - [214, 39, 40]).sum(1) < 30).sum() > 20  # matplotlib's tab:red
    assert (np.abs(pixels - [191, 191, 191]).sum(1) < 6).sum() > 20  # the real points, grey 0.75
    gen = load_generator(tmp_path / "run")
    points = gen.sample(50, seed=0)
    assert points.shape == (50, 2) and torch.isfinite(points).all()
    assert not gen.is_image and not gen.is_ema


@pytest.mark.parametrize("override, match", [
    ("optim.lr_gg=1e-3", "did you mean 'optim.lr_g'"),
    ("model.generator.widht=4", "did you mean 'model.generator.width'"),
    ("data.name=cifar100", "data.name"),
    ("data.resolution=36", "resolution 36"),
    ("train.batch_size=1000", "fewer than one batch"),
    ("train.device=cuda:7" if not torch.cuda.is_available() else "train.device=tpu", "train.device"),
])
def test_bad_configs_fail_before_anything_is_written(tmp_path, tiny_cfg, override, match):
    with pytest.raises(ConfigError, match=match):
        train(make_cfg(tiny_cfg, override), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match="unknown device"):
        select_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            select_device("cuda")


# ---------------------------------------------------------------------------------------------
# Objectives, optimizers and D options through the loop


CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUIET = ["train.device=cpu", "train.steps=3", "log.every=1", "log.sample_every=0", "log.progress=false",
         "log.tensorboard=false", "log.plot=false", "checkpoint.every=100", "eval.every=0"]
TINY_IMAGES = ["data.limit=64", "train.batch_size=16", "model.latent_dim=8", "model.generator.width=4",
               "model.discriminator.width=4"]
TINY_POINTS = ["data.num_points=256", "train.batch_size=32", "model.latent_dim=4",
               "model.generator.widths=[16]", "model.discriminator.widths=[16]"]
PRESETS = {"mnist_wgan": TINY_IMAGES, "mnist_wgan_gp": TINY_IMAGES, "mnist_lsgan": TINY_IMAGES,
           "mnist_sngan": TINY_IMAGES, "ring": TINY_POINTS, "grid": TINY_POINTS}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_train_three_steps(tmp_path, preset):
    cfg = load(CONFIGS / f"{preset}.yaml", [*PRESETS[preset], *QUIET])
    result = train(cfg, tmp_path / "run")
    assert result.step == 3 and result.stopped_by == "steps"
    rows = _rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r[k]) for r in rows for k in ("loss_d", "loss_g", "d_real", "d_fake"))
    if cfg.objective.name == "wgan-gp":
        assert all(r["gp"] >= 0 for r in rows)
    if cfg.objective.name == "wgan":  # clipped after every critic step, saved clipped
        d = load_checkpoint(result.checkpoint)[0]["d"]
        params = [t for k, t in d.items() if k.endswith(("weight", "bias"))]  # not BatchNorm's statistics
        assert params and max(t.abs().max().item() for t in params) <= 0.01 + 1e-9


# wgan-gp's penalty (double backward through spectrally normalised layers), RMSprop, a linear lr decay,
# a lazy R1 penalty, D steps 2, and a dcgan D with SN and minibatch stddev plus dropout (RNG use in D)
EXOTIC = ["objective.name=wgan-gp", "objective.label_smoothing=0", "objective.r1_gamma=1",
          "objective.r1_every=3", "optim.name=rmsprop", "optim.schedule=linear", "train.steps=12",
          "model.discriminator={name: dcgan, width: 8, norm: none, spectral_norm: true, minibatch_std: true, "
          "dropout: 0.2}", "checkpoint.every=100", "log.every=2", "log.sample_every=0"]


def test_resume_is_bit_exact_with_spectral_norm_gradient_penalty_rmsprop_and_lr_decay(tmp_path):
    cfg = make_cfg(TINY, *EXOTIC)
    straight = train(cfg, tmp_path / "straight")
    first = train(cfg, tmp_path / "run", stop=StopAfter(6))  # at a log step: log windows stay aligned
    assert first.step == 6
    second = train(cfg, tmp_path / "run", resume=True)
    assert second.step == 12
    _assert_same_training_state(_final_state(second), _final_state(straight))
    state, _ = _final_state(straight)
    assert any(k.endswith("weight.0._u") for k in state["d"])  # the power iteration was saved and restored
    # the learning rate of the last update: lr_d x (1 - 11 / 12)
    assert state["opt_d"]["param_groups"][0]["lr"] == pytest.approx(2e-4 / 12)
    assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(2e-4 / 12)
    rows = _rows(tmp_path / "straight")
    assert all(r["gp"] >= 0 for r in rows)
    assert sum("r1" in r for r in rows) >= 3  # lazy: logged in the intervals where it ran
    strip = ("seconds", "img_per_s")
    assert [{k: v for k, v in r.items() if k not in strip} for r in _rows(tmp_path / "run")] == \
        [{k: v for k, v in r.items() if k not in strip} for r in rows]


@pytest.mark.parametrize("name, alarm", [("ns", True), ("hinge", False)])
def test_the_d_wins_alarm_reads_probabilities_only(tmp_path, tiny_cfg, name, alarm):
    # a threshold every D(G(z)) is below: only a logistic D's output is a probability to compare with it
    cfg = make_cfg(tiny_cfg, f"objective.name={name}", "objective.label_smoothing=0", "train.steps=2",
                   "log.every=1", "health.patience=1", "health.d_wins_below=1e9")
    train(cfg, tmp_path / "run")
    events = tmp_path / "run" / "events.jsonl"
    assert (events.exists() and "d_wins" in events.read_text()) == alarm


def test_instance_noise_keeps_the_schedule_the_run_began_with(tmp_path):
    """Issue 16, defect 13: with instance_noise_steps 0 the horizon is the run's train.steps at its start,
    kept in the checkpoint: a resume with another --steps continues the same schedule."""
    cfg = make_cfg(TINY, "objective.instance_noise=0.5", "objective.instance_noise_steps=0", "train.steps=2")
    first = train(cfg, tmp_path / "run")
    assert load_checkpoint(first.checkpoint)[1]["noise_horizon"] == 2
    resumed = train(make_cfg(TINY, "objective.instance_noise=0.5", "objective.instance_noise_steps=0",
                             "train.steps=4"), tmp_path / "run", resume=True)
    assert resumed.step == 4 and load_checkpoint(resumed.checkpoint)[1]["noise_horizon"] == 2
    with pytest.raises(ConfigError, match="objective.instance_noise_steps"):
        train(make_cfg(TINY, "objective.instance_noise=0.5", "objective.instance_noise_steps=0", "train.steps=null",
                       "train.max_seconds=5"), tmp_path / "other")
    assert not (tmp_path / "other").exists()
