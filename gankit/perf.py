"""The speed path of the training step: mixed precision, channels-last memory layout, torch.compile.

``perf`` in the config is resolved once per run, on the device found (:func:`setup`); the resolved
values go into every checkpoint's metadata and, when any is on, into the run's first log line.

- Mixed precision runs the networks' forward passes under ``torch.autocast`` and hands their outputs
  back in float32, so losses, penalties and optimizer state stay float32 (the master weights are never
  cast). fp16 backpropagates through a ``GradScaler`` per network (D's and G's gradients differ by
  orders of magnitude), whose state is checkpointed; bf16 needs none. fp16 gradient penalties
  (wgan-gp, R1) differentiate an unscaled output and may underflow: prefer bf16 with them.
- Channels-last stores conv weights and image batches as NHWC, the layout tensor cores read fastest.
- ``torch.compile`` compiles the training forwards of G and D; D is left uncompiled when the objective
  takes gradients of D's output with respect to its input (gradient penalties), because compiled
  graphs do not support double backward.

With everything off (the CPU default) the training step runs the plain networks: bit-for-bit the
loop without this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from gankit.config import ConfigError, PerfConfig

COMPILE_BACKEND = "inductor"  # tests swap in "eager" to exercise the path without a C++ toolchain
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingForward(nn.Module):
    """``net`` as the training step runs it: channels-last image inputs, autocast, float32 outputs.
    Holds no weights of its own (``net``'s are the trained ones)."""

    def __init__(self, net: nn.Module, device_type: str, amp: str, channels_last: bool) -> None:
        super().__init__()
        self.net, self.device_type, self.channels_last = net, device_type, channels_last
        self.dtype = _DTYPES.get(amp)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.channels_last:
            args = tuple(a.contiguous(memory_format=torch.channels_last)
                         if isinstance(a, torch.Tensor) and a.dim() == 4 else a for a in args)
        with torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            out = self.net(*args, **kwargs)
        return out.float() if isinstance(out, torch.Tensor) and out.is_floating_point() else out


@dataclass
class Perf:
    """Resolved settings, the training forwards of G and D (None: the plain networks) and fp16 scalers."""

    amp: str = "fp32"
    channels_last: bool = False
    compile: str = "off"  # off, g (D needs double backward), or g+d
    g: nn.Module | None = None
    d: nn.Module | None = None
    scalers: dict[str, torch.amp.GradScaler] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"amp": self.amp, "channels_last": self.channels_last, "compile": self.compile}

    @property
    def active(self) -> bool:
        return self.amp != "fp32" or self.channels_last or self.compile != "off"

    def state_dict(self) -> dict[str, Any]:
        """``{"scaler": {"g": ..., "d": ...}}`` with fp16, else nothing (checkpoints stay as they were)."""
        return {"scaler": {k: s.state_dict() for k, s in self.scalers.items()}} if self.scalers else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("scaler") or {}
        for key, scaler in self.scalers.items():
            if key in saved:  # a checkpoint from a run without fp16 leaves the fresh scaler
                scaler.load_state_dict({k: (v.item() if isinstance(v, torch.Tensor) else v)
                                        for k, v in saved[key].items()})


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX), where autocast pays off."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:  # not Linux: no way to tell here, so float32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(name: str, device: torch.device) -> str:
    if name == "auto":
        if device.type == "cpu":
            # measured on an AVX512-BF16 CPU: 1.3-1.5x the steps/s of float32 on one core with FID at equal
            # steps within 5 % (benchmarks/RESULTS.md); without native bfloat16 autocast is slower
            return "bf16" if cpu_has_native_bf16() else "fp32"
        if device.type != "cuda":
            return "fp32"  # MPS: untested
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    if name != "fp32" and not torch.amp.is_autocast_available(device.type):
        raise ConfigError(f"config: perf.amp {name}: no autocast on {device.type} (use fp32)")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ConfigError("config: perf.amp bf16: this GPU has no native bfloat16 (use fp16 or auto)")
    return name


def _has_convs(*nets: nn.Module) -> bool:
    return any(p.dim() == 4 for net in nets for p in net.parameters())


def needs_double_backward(objective: Any) -> bool:
    """Whether D's loss differentiates D's output with respect to its input (penalties, R1)."""
    from gankit.objectives import Objective

    return type(objective).penalty is not Objective.penalty or (getattr(objective.cfg, "r1_gamma", 0) > 0
                                                                  or getattr(objective.cfg, "r2_gamma", 0) > 0)


def setup(cfg: PerfConfig, device: torch.device, g: nn.Module, d: nn.Module, objective: Any) -> Perf:
    """Resolve ``cfg`` on ``device``; converts G and D to channels-last in place when that is on (call
    before building optimizers and the EMA copy) and builds their training forwards."""
    amp = resolve_amp(cfg.amp, device)
    if cfg.amp == "auto" and device.type == "cpu" and not _has_convs(g, d):
        amp = "fp32"  # measured on convolutions only; a few small linear layers gain nothing from the casts
    channels_last = cfg.channels_last if cfg.channels_last is not None else \
        device.type == "cuda" and amp != "fp32" and _has_convs(g, d)
    if cfg.compile and device.type == "mps":
        raise ConfigError("config: perf.compile: torch.compile does not support MPS (set it to false)")
    compile_d = cfg.compile and not needs_double_backward(objective)
    perf = Perf(amp, channels_last, ("g+d" if compile_d else "g") if cfg.compile else "off")
    if not perf.active:
        return perf
    if channels_last:
        g.to(memory_format=torch.channels_last)
        d.to(memory_format=torch.channels_last)

    def training_forward(net: nn.Module, compiled: bool) -> nn.Module:
        fwd = TrainingForward(net, device.type, amp, channels_last)
        return _compiled(fwd) if compiled else fwd

    perf.g, perf.d = training_forward(g, cfg.compile), training_forward(d, compile_d)
    if amp == "fp16":
        perf.scalers = {"g": torch.amp.GradScaler(device.type), "d": torch.amp.GradScaler(device.type)}
    return perf


def _compiled(net: nn.Module) -> nn.Module:
    # dynamic=False: batch shapes are fixed; a G step (D frozen) and a D step compile one graph each
    return torch.compile(net, backend=COMPILE_BACKEND, dynamic=False)  # type: ignore[return-value]


def backward_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                  sync: Callable[[torch.optim.Optimizer], None], grad_norm: bool = False) -> torch.Tensor | None:
    """Backward, ``sync`` (average gradients over processes), optimizer step; fp16 through ``scaler``.
    With ``grad_norm``, returns the total L2 norm of the gradients of ``opt``'s parameters as the step
    applies them (averaged over processes, unscaled), a tensor on their device (no sync); else None.

    The gradients are averaged while still scaled, so an inf on any process reaches every process and
    all of them skip the step together; such a skipped fp16 step's norm counts as 0."""
    if scaler is None:
        loss.backward()
        sync(opt)
        norm = total_grad_norm(opt) if grad_norm else None
        opt.step()
        return norm
    scaler.scale(loss).backward()
    sync(opt)
    norm = None
    if grad_norm:
        scaler.unscale_(opt)  # step() does not unscale twice
        norm = torch.nan_to_num(total_grad_norm(opt), nan=0.0, posinf=0.0)
    scaler.step(opt)
    scaler.update()
    return norm


def total_grad_norm(opt: torch.optim.Optimizer) -> torch.Tensor:
    """The L2 norm of all gradients of ``opt``'s parameters together (0 when none has a gradient)."""
    params = [p for group in opt.param_groups for p in group["params"]]
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device if params else None)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
