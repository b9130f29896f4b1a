"""gankit.run_state: what the loop owns about a run, and how checkpoints of every gankit version keep it."""
from __future__ import annotations

import math

from gankit.run_state import RunState


def test_meta_round_trips_and_the_run_length_stays_this_run_s():
    run = RunState(step=7, images_seen=448, lr_scale=0.25, rollbacks=2, best_fid=12.5, total=40, noise_horizon=30)
    meta = {**run.meta(), "config": {"train": {"steps": 40}}, "threads": 2}
    back = RunState(total=80)
    back.restore(meta)
    assert (back.step, back.images_seen, back.lr_scale, back.rollbacks, back.best_fid) == (7, 448, 0.25, 2, 12.5)
    assert back.total == 80 and back.noise_horizon == 30 and back.threads == 2
    assert back.noise_steps == 30  # the schedule the run began with, not the new length


def test_no_best_fid_is_written_as_null_and_read_as_infinity():
    assert RunState().meta()["best_fid"] is None
    back = RunState()
    back.restore({**RunState().meta(), "config": {"train": {"steps": 10}}})
    assert math.isinf(back.best_fid)


def test_checkpoints_of_older_versions_resume():
    """Before rollbacks and horizons were kept: no such keys; the horizon was the run's train.steps."""
    back = RunState(total=50)
    back.restore({"step": 20, "images_seen": 640, "config": {"train": {"steps": 30}}})
    assert (back.rollbacks, back.lr_scale, back.noise_steps, back.threads) == (0, 1.0, 30, None)
    open_ended = RunState(total=None)
    open_ended.restore({"step": 1, "images_seen": 1, "config": {"train": {"steps": None}}})
    assert open_ended.noise_steps == 0
