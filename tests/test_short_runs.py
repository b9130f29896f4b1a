"""Short runs are complete runs; threads chosen by measurement; the EMA warm-up and its warning."""
from __future__ import annotations

import json
import sys
import time

import pytest
import torch

from conftest import TINY, make_cfg
from gankit.logs import RunLogger
from gankit.metrics import fid, get_extractor
from gankit.data.bundled import load_mnist10k_arrays
from gankit.sampling import load_generator
from gankit.threads import choose_threads
from gankit.train import train


def test_a_run_shorter_than_its_log_interval_logs_its_final_step(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg(TINY, "train.steps=7", "log.every=50", "log.sample_every=0", "log.tensorboard=true",
                   "log.plot=true")
    train(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [7]
    assert {"loss_d", "loss_g", "d_real", "d_fake", "seconds"} <= set(rows[0])
    assert (tmp_path / "run" / "loss_curves.png").stat().st_size > 1000  # one row is enough for a plot
    assert (tmp_path / "run" / "samples" / "step_000007.png").is_file()
    # the folder, not one file: the final hparams are an events file of their own beside the scalars'
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss/loss_d")] == [7]
    assert [e.step for e in events.Images("samples")] == [7]  # the final grid reaches TensorBoard too
    err = capsys.readouterr().err
    assert "gankit: training on cpu, 2 threads | G dcgan" in err and "mnist10k: 256 1x28x28 images" in err
    assert f"run dir {tmp_path / 'run'}" in err


def test_the_progress_total_follows_the_time_budget(tmp_path):
    logger = RunLogger(tmp_path, start_step=0, total_steps=1_000_000, progress=True, tensorboard=False,
                       batch_size=1, deadline=time.perf_counter() + 3.0)
    try:
        start = time.perf_counter()
        while time.perf_counter() - start < 1.3:
            logger.advance()
            time.sleep(0.005)
        # about 150 steps/s for 3 s: a total near 450, not the million of train.steps
        assert 100 < logger.bar.total < 2000
    finally:
        logger.close()


def test_a_piped_progress_bar_writes_a_line_now_and_then_not_one_per_step(tmp_path, capsys, monkeypatch):
    """stderr into a file (CI, nohup, `| tee`): a plain line every PIPED_INTERVAL s, not one per redraw."""
    import gankit.logs

    monkeypatch.setattr(gankit.logs, "PIPED_INTERVAL", 0.5)
    logger = RunLogger(tmp_path, start_step=0, total_steps=1_000_000, progress=True, tensorboard=False,
                       batch_size=1, deadline=time.perf_counter() + 3.0)
    try:
        assert not logger.live  # capsys's stderr is not a terminal
        start = time.perf_counter()
        while time.perf_counter() - start < 1.6:
            logger.advance()
            time.sleep(0.002)
        logger.rewind(3)
    finally:
        logger.close()
    lines = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.strip()]
    assert 2 <= len(lines) <= 8, lines  # hundreds of steps, a handful of lines
    assert all(line.isascii() for line in lines)


class FakeWork:
    """A pass whose cost depends on the thread count, on a fake clock."""

    def __init__(self, cost: dict[int, float]) -> None:
        self.cost, self.now = cost, 0.0

    def __call__(self) -> None:
        self.now += self.cost[torch.get_num_threads()]

    def clock(self) -> float:
        return self.now


@pytest.mark.parametrize("cost, expected", [
    ({2: 0.064, 1: 0.099}, 2),   # quiet: the second thread pays (15.6 vs 10.1 steps/s)
    ({2: 0.40, 1: 0.10}, 1),     # another process on the cores: spin-waits cost the 2-thread run
    ({2: 0.100, 1: 0.095}, 2),   # within a tenth: all cores
])
def test_choose_threads_keeps_the_faster_setting_and_restores_the_count(cost, expected):
    before = torch.get_num_threads()
    work = FakeWork(cost)
    chosen, rates = choose_threads(work, 2, clock=work.clock)
    assert chosen == expected
    assert rates[1] == pytest.approx(1 / cost[1]) and rates[2] == pytest.approx(1 / cost[2])
    assert torch.get_num_threads() == before
    assert choose_threads(work, 1, clock=work.clock) == (1, {})


def test_the_thread_probe_fits_a_time_budget():
    work = FakeWork({2: 3.0, 1: 5.0})  # a 64 px model: seconds per pass
    chosen, rates = choose_threads(work, 2, budget=1.5, clock=work.clock)
    assert chosen == 2 and rates[0] > 1.5 and work.now == 3.0  # one pass, then all cores untimed
    work = FakeWork({2: 0.064, 1: 0.099})  # the default on a 300 s budget: timed, in well under 5 %
    chosen, rates = choose_threads(work, 2, budget=15.0, clock=work.clock)
    assert chosen == 2 and set(rates) == {1, 2} and work.now < 15.0


def test_a_short_budget_is_announced_and_not_spent_on_the_probe(tmp_path, capsys, monkeypatch):
    train_module = sys.modules["gankit.train"]
    monkeypatch.setattr(train_module, "available_cores", lambda: 2)
    monkeypatch.setattr(train_module, "PROBE_SHARE", 1e-9)
    train(make_cfg(TINY, "train.threads=null", "train.steps=2", "train.max_seconds=30"), tmp_path / "run")
    err = capsys.readouterr().err
    assert "2 threads (auto: all cores; timing them against one would take ~" in err
    assert "more than 0% of the 30 s budget" in err


def test_auto_threads_are_measured_recorded_and_kept_on_resume(tmp_path, capsys, monkeypatch):
    train_module = sys.modules["gankit.train"]

    monkeypatch.setattr(train_module, "available_cores", lambda: 2)
    monkeypatch.setattr(train_module, "choose_threads", lambda work, cores, budget=None: (work(), (1, {2: 50.0, 1: 80.0}))[1])
    cfg = make_cfg(TINY, "train.threads=null", "train.steps=4")
    train(cfg, tmp_path / "run")
    assert "1 thread (auto: 50 passes/s on 2 vs 80 passes/s on 1)" in capsys.readouterr().err
    from gankit.checkpoint import load_checkpoint

    _, meta = load_checkpoint(next((tmp_path / "run" / "checkpoints").glob("step_*.safetensors")))
    assert meta["threads"] == 1
    monkeypatch.setattr(train_module, "choose_threads", lambda work, cores, budget=None: pytest.fail("resume re-measured"))
    torch.set_num_threads(2)
    train(make_cfg(cfg, "train.steps=6"), tmp_path / "run", resume=True)
    assert "1 thread (auto, as the checkpoint trained)" in capsys.readouterr().err
    assert torch.get_num_threads() == 1


def test_the_probe_leaves_weights_statistics_and_random_state_untouched(tmp_path):
    from gankit.config import from_dict
    from gankit.threads import probe_work
    from gankit.train import prepare

    trainer = prepare(from_dict(make_cfg(TINY, "train.threads=null")))
    before = {k: v.clone() for k, v in {**trainer.g.state_dict(), **trainer.d.state_dict()}.items()}
    rng = torch.get_rng_state()
    probe_work(trainer.g, trainer.d, trainer.cfg.model.latent_dim, trainer.source.shape, 8, None, trainer.device)()
    after = {**trainer.g.state_dict(), **trainer.d.state_dict()}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for p in trainer.g.parameters())


def test_an_ema_without_warmup_warns_and_eval_can_measure_the_raw_generator(tmp_path, capsys):
    from gankit.cli import main

    cfg = make_cfg(TINY, "train.steps=20", "train.ema_decay=0.999", "train.ema_warmup=false")
    train(cfg, tmp_path / "cold")
    with pytest.warns(UserWarning, match="still holds 98% of the initial random weights"):
        load_generator(tmp_path / "cold")
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "cold"), "--num", "4", "--out", str(tmp_path / "s.npz")]) == 0
    err = capsys.readouterr().err
    assert err.count("gankit: warning:") == 1 and "--no-ema" in err
    train(make_cfg(TINY, "train.steps=20", "train.ema_decay=0.999"), tmp_path / "warm")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_generator(tmp_path / "warm")  # warmed up: nothing to warn about
    assert main(["eval", str(tmp_path / "warm"), "--ref", "mnist10k", "--metrics", "classes", "--num", "20",
                 "--no-ema", "--json", str(tmp_path / "raw.json")]) == 0
    assert "(generator at step 20" in json.loads((tmp_path / "raw.json").read_text())["info"]["samples"]


def test_a_100_step_default_run_samples_an_ema_as_good_as_its_generator(tmp_path):
    """The EMA's warm-up: after 100 steps of the default preset its samples are as digit-like as the
    raw G's (a fixed 0.999 decay left 90 % of the initial weights in them: grey noise)."""
    from gankit.config import load

    cfg = load("configs/mnist_dcgan.yaml", ["train.steps=100", "train.threads=2", "log.progress=false",
                                            "log.tensorboard=false", "log.sample_every=0"])
    train(cfg, tmp_path / "run")
    extractor = get_extractor("mnist-cnn")
    real, _ = load_mnist10k_arrays()
    ref, _ = extractor.extract(torch.from_numpy(real[:2000]).unsqueeze(1))
    scores = {}
    for ema in (True, False):
        gen = load_generator(tmp_path / "run", ema=ema)
        feats, _ = extractor.extract(gen.to_uint8(gen.sample(2000, seed=0)))
        scores[ema] = fid(feats, ref)
    assert scores[True] <= 1.2 * scores[False], scores


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
