"""gankit.perf: the code paths of mixed precision, channels-last and torch.compile that run on a CPU.

CUDA-only behaviour (auto choosing bf16 or fp16, NCCL) is resolved by the same functions on a GPU;
``benchmarks/throughput.py --device cuda`` measures it.
"""
from __future__ import annotations

import pytest
import torch

from conftest import TINY, TINY_RING, assert_states_equal, make_cfg, step_game
from gankit import perf
from gankit.checkpoint import load_checkpoint
from gankit.config import ConfigError, from_dict
from gankit.train import prepare, train

# a conv G and a conv D, without dropout or noise, so that two ways of running a step can be compared
CONV = make_cfg(TINY, "model.discriminator={name: dcgan, width: 8}", "objective.label_smoothing=0",
                "objective.instance_noise=0", "train.ema_decay=0", "train.d_steps=1")


def test_cpu_defaults_autocast_to_bf16_only_where_the_cpu_has_it_and_fp32_leaves_the_step_alone(monkeypatch):
    import gankit.perf

    for native in (True, False):
        monkeypatch.setattr(gankit.perf, "cpu_has_native_bf16", lambda: native)
        trainer = prepare(from_dict(make_cfg(TINY, "perf.amp=auto")))
        assert trainer.perf.describe() == {"amp": "bf16" if native else "fp32", "channels_last": False,
                                           "compile": "off"}
        assert (trainer.g_train is trainer.g) is not native  # fp32: the plain networks, bit for bit
        assert "scaler" not in trainer.state_dict()
    # no convolution (the 2D MLPs): float32 even where the CPU has bfloat16
    monkeypatch.setattr(gankit.perf, "cpu_has_native_bf16", lambda: True)
    mlps = prepare(from_dict(make_cfg(TINY, "perf.amp=auto", "model.generator={name: mlp, widths: [16]}")))
    assert mlps.perf.amp == "fp32"


def test_the_cpus_bfloat16_is_read_from_its_flags(tmp_path, monkeypatch):
    import builtins

    import gankit.perf

    real_open = builtins.open
    for flags, native in (("fpu avx512f avx512_bf16 sse", True), ("fpu amx_bf16", True), ("fpu avx512f", False)):
        (tmp_path / "cpuinfo").write_text(f"processor : 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda f, *a, **k: real_open(tmp_path / "cpuinfo" if f == "/proc/cpuinfo"
                                                                          else f, *a, **k))
        assert gankit.perf.cpu_has_native_bf16() is native


def test_bf16_autocast_runs_the_networks_in_bf16_and_the_losses_in_float32():
    trainer = prepare(from_dict(make_cfg(CONV, "perf.amp=bf16")))
    assert trainer.perf.amp == "bf16" and not trainer.perf.scalers
    seen: list[torch.dtype] = []
    conv = next(m for m in trainer.d.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    before = [p.clone() for p in trainer.g.parameters()]
    stats = step_game(trainer, 10)
    assert seen and set(seen) == {torch.bfloat16}
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in stats.values())
    assert all(p.dtype == torch.float32 for p in trainer.g.parameters())  # master weights stay float32
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.g.parameters()))


def test_fp16_gradient_scaler_is_checkpointed_and_resumes_bit_exact(tmp_path):
    cfg = make_cfg(TINY_RING, "perf.amp=fp16", "checkpoint.every=3", "checkpoint.keep=5")
    straight = train(make_cfg(cfg, "train.steps=6"), tmp_path / "straight")
    first = train(make_cfg(cfg, "train.steps=3"), tmp_path / "resumed")
    assert first.step == 3
    resumed = train(make_cfg(cfg, "train.steps=6"), tmp_path / "resumed", resume=True)
    (a, meta), (b, _) = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert set(a["scaler"]) == {"g", "d"} and a["scaler"]["d"]["scale"] > 0
    assert meta["perf"] == {"amp": "fp16", "channels_last": False, "compile": "off"}
    for key in ("g", "d", "opt_g", "opt_d", "rng", "scaler"):
        assert_states_equal(a[key], b[key], key)


def test_channels_last_converts_the_convs_and_checkpoints_stay_standard(tmp_path):
    cfg = make_cfg(CONV, "perf.channels_last=true", "train.steps=2", "train.ema_decay=0.9")
    trainer = prepare(from_dict(cfg))
    convs = [p for p in trainer.d.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    plain = prepare(from_dict(make_cfg(CONV, "train.steps=2", "train.ema_decay=0.9")))
    a, b = step_game(trainer, 2), step_game(plain, 2)
    for key in a:  # the same step in another memory layout
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    result = train(cfg, tmp_path / "run")
    state, _ = load_checkpoint(result.checkpoint)
    assert all(t.is_contiguous() for net in ("g", "d", "g_ema") for t in state[net].values())


@pytest.mark.parametrize("objective, compiled", [("ns", "g+d"), ("wgan-gp", "g")])
def test_compile_wraps_the_training_forwards(monkeypatch, objective, compiled):
    # inductor needs a C++ toolchain and minutes on this CPU; aot_eager runs the same Dynamo capture and
    # AOTAutograd backward graphs, with eager kernels
    monkeypatch.setattr(perf, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    cfg = make_cfg(CONV, f"objective.name={objective}", "perf.compile=true")
    trainer = prepare(from_dict(cfg))
    assert trainer.perf.compile == compiled  # a gradient penalty keeps D eager (no double backward)
    plain = prepare(from_dict(make_cfg(CONV, f"objective.name={objective}")))
    for _ in range(2):
        a, b = step_game(trainer, 2), step_game(plain, 2)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("override, match", [
    ("perf.amp=fp8", "perf.amp must be one of auto, fp32, bf16, fp16"),
    ("perf.channels_last=sometimes", "perf.channels_last must be bool"),
])
def test_bad_perf_values_are_config_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(make_cfg(TINY, override))


def test_sync_batchnorm_needs_cuda():
    from gankit.distributed import sync_batchnorm

    with pytest.raises(ConfigError, match="SyncBatchNorm runs on CUDA only"):
        sync_batchnorm(torch.device("cpu"), torch.nn.BatchNorm1d(3))


@pytest.mark.parametrize("model", ["stylegan", "biggan", "resnet"])
def test_every_generator_family_trains_a_step_under_bf16(model):
    """The mixed-precision path of every family, not only the DCGAN: StyleGAN's running mean of w was
    updated from a bf16 w into a float32 buffer and failed (on CUDA too, where bf16 is the default)."""
    g = {"stylegan": "{name: stylegan, width: 16, mapping_layers: 2, w_dim: 16}",
         "biggan": "{name: biggan, width: 8}", "resnet": "{name: resnet, width: 8}"}[model]
    trainer = prepare(from_dict(make_cfg(TINY, f"model.generator={g}", "model.discriminator={name: dcgan, width: 8}",
                                         "data.resolution=32", "perf.amp=bf16")))
    stats = step_game(trainer, 10)
    assert all(torch.isfinite(v) for v in stats.values())
    buffers = dict(trainer.g.named_buffers())
    assert all(b.dtype in (torch.float32, torch.int64, torch.long) for b in buffers.values())


def test_grad_norms_are_logged_finite_and_change_no_training(tmp_path):
    """log.grad_norms adds grad_norm_d / grad_norm_g (D's on its last update of each step) and nothing else: the
    losses and the final weights are bit for bit those of the same run without it."""
    import json

    cfg = make_cfg(TINY, "train.steps=6", "log.every=2", "checkpoint.every=6")
    train(from_dict(cfg), tmp_path / "off")
    train(from_dict(make_cfg(cfg, "log.grad_norms=true")), tmp_path / "on")
    rows = {k: [json.loads(line) for line in (tmp_path / k / "metrics.jsonl").read_text().splitlines()]
            for k in ("off", "on")}
    for off, on in zip(rows["off"], rows["on"]):
        assert on["grad_norm_d"] > 0 and on["grad_norm_g"] > 0
        assert all(torch.isfinite(torch.tensor(on[k])) for k in ("grad_norm_d", "grad_norm_g"))
        assert "grad_norm_d" not in off and {k: v for k, v in on.items() if k in off and k not in
                                              ("seconds", "img_per_s")} == {k: v for k, v in off.items()
                                                                            if k not in ("seconds", "img_per_s")}
    state_off, _ = load_checkpoint(tmp_path / "off" / "checkpoints" / "step_00000006.safetensors")
    state_on, _ = load_checkpoint(tmp_path / "on" / "checkpoints" / "step_00000006.safetensors")
    assert_states_equal(state_off, state_on)


def test_the_total_gradient_norm_is_the_norm_of_all_gradients_together():
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    loss = net(torch.randn(4, 3)).pow(2).sum()
    norm = perf.backward_step(loss, opt, None, lambda o: None, grad_norm=True)
    expected = torch.cat([p.grad.flatten() for p in net.parameters()]).norm()
    assert torch.allclose(norm, expected)
    assert perf.backward_step(net(torch.randn(4, 3)).sum(), opt, None, lambda o: None) is None
