"""gankit.optim: optimizers by name (betas only for Adam), learning-rate schedules as functions of the step."""
from __future__ import annotations

import pytest
import torch

from gankit.config import ConfigError, OptimConfig, from_dict
from gankit.optim import build_optimizers, lr_factor


def _nets() -> tuple[torch.nn.Module, torch.nn.Module]:
    return torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)


def test_adam_is_the_default_with_per_network_rates_and_betas():
    cfg = OptimConfig(lr_g=1e-4, lr_d=4e-4, betas_g=[0.0, 0.9], betas_d=[0.5, 0.99])
    opt_g, opt_d = build_optimizers(cfg, *_nets())
    assert isinstance(opt_g, torch.optim.Adam) and isinstance(opt_d, torch.optim.Adam)
    assert opt_g.param_groups[0]["lr"] == 1e-4 and opt_g.param_groups[0]["betas"] == (0.0, 0.9)
    assert opt_d.param_groups[0]["lr"] == 4e-4 and opt_d.param_groups[0]["betas"] == (0.5, 0.99)


def test_rmsprop_and_sgd():
    opt_g, opt_d = build_optimizers(OptimConfig(name="rmsprop", lr_g=5e-5, lr_d=5e-5, alpha=0.9), *_nets())
    assert isinstance(opt_d, torch.optim.RMSprop)
    group = opt_d.param_groups[0]
    assert group["lr"] == 5e-5 and group["alpha"] == 0.9 and group["momentum"] == 0.0
    assert "betas" not in group  # Adam's betas mean nothing to RMSprop
    _, sgd = build_optimizers(OptimConfig(name="sgd", momentum=0.9), *_nets())
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize("name", ["adam", "rmsprop", "sgd"])
def test_multi_tensor_updates_equal_the_per_tensor_loop_bit_for_bit(name):
    """The optimizers take torch's multi-tensor path (the fast one on CPU), which must not change a run."""
    cfg = OptimConfig(name=name, momentum=0.9 if name == "sgd" else 0.0, weight_decay=1e-4)
    torch.manual_seed(0)
    g, d = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)), torch.nn.Linear(4, 1)
    twin = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    twin.load_state_dict(g.state_dict())
    start = [p.detach().clone() for p in g.parameters()]
    fast, _ = build_optimizers(cfg, g, d)
    assert fast.defaults["foreach"] is True
    per_tensor = type(fast)(twin.parameters(), **{**fast.defaults, "foreach": False})
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    for _ in range(20):
        for net, opt in ((g, fast), (twin, per_tensor)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    assert all(not torch.equal(p, p0) for p, p0 in zip(g.parameters(), start))  # 20 real updates
    assert all(torch.equal(a, b) for a, b in zip(g.parameters(), twin.parameters()))


def test_bad_optimizer_settings_are_config_errors():
    with pytest.raises(ConfigError, match="optim.name must be one of adam, rmsprop, sgd"):
        from_dict({"optim": {"name": "adagrad"}})
    with pytest.raises(ConfigError, match="optim.name: unknown optimizer 'adamw'"):
        build_optimizers(OptimConfig(name="adamw"), *_nets())
    with pytest.raises(ConfigError, match="optim.momentum must be < 1"):
        from_dict({"optim": {"momentum": 1.0}})


def test_linear_schedule_decays_to_zero_at_the_last_step():
    cfg = OptimConfig(schedule="linear")
    assert [lr_factor(cfg, s, 4) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert lr_factor(cfg, 9, 4) == 0.0
    assert lr_factor(OptimConfig(), 3, 4) == lr_factor(OptimConfig(), 3, None) == 1.0
    with pytest.raises(ConfigError, match="set train.steps or train.epochs"):
        lr_factor(cfg, 0, None)
    with pytest.raises(ConfigError, match="optim.schedule linear"):
        from_dict({"optim": {"schedule": "linear"}, "train": {"steps": None, "max_seconds": 10}})
    assert from_dict({"optim": {"schedule": "linear"}, "train": {"steps": None, "epochs": 2}}).optim.schedule == "linear"


def test_cosine_schedules_of_the_rate_beta2_and_gamma_follow_the_step_and_resume_exactly(tmp_path):
    from conftest import TINY, assert_states_equal, make_cfg
    from gankit.checkpoint import load_checkpoint
    from gankit.ema import halflife
    from gankit.optim import cosine_ramp
    from gankit.run_state import RunState
    from gankit.train import prepare, train

    assert cosine_ramp(1.0, 0.1, 0, 100) == 1.0 and cosine_ramp(1.0, 0.1, 100, 100) == pytest.approx(0.1)
    assert cosine_ramp(0.9, 0.99, 50, 100) == pytest.approx(0.945) and cosine_ramp(1.0, 0.0, 200, 100) == 0.0
    sched = ["optim.schedule=cosine", "optim.lr_final=0.25", "optim.beta2_final=0.999", "objective.r1_gamma=1",
             "objective.gamma_final=0.1", "optim.betas_g=[0.5, 0.9]", "optim.betas_d=[0.5, 0.9]",
             "train.ema_decay=0.9", "train.ema_decay_final=0.99", "train.steps=10", "checkpoint.every=5"]
    trainer = prepare(from_dict(make_cfg(TINY, *sched)))
    trainer.begin_step(RunState(step=5, total=10))
    lr = trainer.optimizers["g"].param_groups[0]["lr"]
    assert lr == pytest.approx(trainer.cfg.optim.lr_g * (0.25 + 0.75 * 0.5))
    assert trainer.optimizers["d"].param_groups[0]["betas"][1] == pytest.approx(0.9495)
    assert trainer.objective.gamma_scale == pytest.approx(0.55)
    # the EMA's half-life halfway: the mean of 0.9's (6.58 updates) and 0.99's (68.97)
    assert halflife(trainer.ema.decay) == pytest.approx((halflife(0.9) + halflife(0.99)) / 2)
    trainer.begin_step(RunState(step=10, total=10))
    assert trainer.ema.decay == pytest.approx(0.99)
    straight = train(make_cfg(TINY, *sched), tmp_path / "straight")

    class StopAfter:  # an interrupt after 5 steps: the schedules' horizon stays train.steps = 10
        polls = 0

        @property
        def requested(self) -> bool:
            self.polls += 1
            return self.polls > 5

    assert train(make_cfg(TINY, *sched), tmp_path / "run", stop=StopAfter()).step == 5
    resumed = train(make_cfg(TINY, *sched), tmp_path / "run", resume=True)
    (a, _), (b, _) = load_checkpoint(resumed.checkpoint), load_checkpoint(straight.checkpoint)
    for key in ("g", "d", "g_ema", "opt_g", "opt_d"):
        assert_states_equal(a[key], b[key], key)


@pytest.mark.parametrize("extra, message", [
    (["train.ema_decay=0.9", "train.ema_decay_final=0.99", "train.steps=null", "train.max_seconds=5"],
     "train.ema_decay_final is reached at the last step"),
    (["train.ema_decay=0", "train.ema_decay_final=0.99"], "set train.ema_decay too"),
    (["train.ema_decay=0.9", "train.ema_decay_final=1.0"], "must be < 1"),
    (["optim.beta2_final=0.99", "train.steps=null", "train.max_seconds=5"], "optim.beta2_final is reached at the last step"),
    (["objective.gamma_final=0.1", "train.steps=null", "train.max_seconds=5"], "objective.gamma_final is reached"),
    (["optim.beta2_final=0.99", "optim.name=sgd"], "schedules Adam's beta2"),
    (["optim.beta2_final=1.0"], "must be < 1"),
])
def test_schedule_settings_that_cannot_work_are_refused(extra, message):
    from conftest import TINY, make_cfg

    with pytest.raises(ConfigError, match=message):
        from_dict(make_cfg(TINY, *extra))
