"""What one playground step and one frame cost, estimated before they run: the page's values must not be
able to freeze the machine, so a combination whose step would take too long or too much memory, or
whose frame would keep the render thread busy for long, is refused by name.

The estimate counts the networks' own forward FLOPs and activations per sample (one forward of two
samples under torch's FLOP counter) and scales them by what a step does: ``d_steps`` D updates (G's
forward, D's forward and backward on the real and the fake batch, the R1 / R2 / gradient penalty's
double backward) and one G update; a frame by what the page draws (gankit.playground.frames: the heat
map's D forwards, G's samples, the arrows' D forward and backward, the mode metrics' samples; in image
mode the grid and the EMA's re-estimated statistics). Checked against measured steps of the 2D game's widest nets
(1,024 x 8) on one core of a busy 2-core CPU: batch 128, 0.7 s and about 350 MiB for 34 GFLOP and
489 MiB estimated; batch 256, 2.2 s and 360 MiB for 68 GFLOP and 529 MiB; batch 8,000 (issue 27),
21.8 s and 1.8 GiB for 2,100 GFLOP and 3.2 GiB. The estimate errs high: a lazy penalty is counted on
every D step, and every module's output as kept for the backward.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from gankit.config import Config
from gankit.playground.frames import GRID_SAMPLES, METRIC_SAMPLES, VIEW_POINTS, VIEW_RESOLUTION

if TYPE_CHECKING:
    from gankit.games.noise_to_image import NoiseToImage as Trainer

MAX_STEP_FLOPS = 50e9  # about half a second of one core of a recent CPU; a few seconds of a slow or busy one
MAX_STEP_BYTES = 1 << 30  # beside the server, the page's copies of the nets and the data
MAX_FRAME_FLOPS = 50e9  # the render thread: a stop waits for the frame it draws
FLOAT_BYTES = 4
CALIBRATION_SAMPLES = 8 * 256  # Trainer.recalibration_batches


@dataclasses.dataclass(frozen=True)
class NetCost:
    """Per-sample forward FLOPs and activation elements of G and D, and their parameter counts."""

    g_flops: float
    d_flops: float
    g_acts: float
    d_acts: float
    params: int


@dataclasses.dataclass(frozen=True)
class StepCost:
    flops: float  # one G step with its d_steps D steps
    bytes: float  # the most memory training holds during it
    frame_flops: float = 0.0  # one frame of the page

    def over(self, allowed: "StepCost") -> str:
        """What is over ``allowed``, in words ("" when nothing is)."""
        parts = []
        if self.flops > allowed.flops:
            parts.append(f"one step would need about {self.flops / 1e9:,.0f} GFLOP (the most is "
                         f"{allowed.flops / 1e9:,.0f})")
        if self.bytes > allowed.bytes:
            parts.append(f"{'it' if parts else 'one step'} would hold about {self.bytes / 2**30:,.1f} GiB of "
                         f"memory (the most is {allowed.bytes / 2**30:,.1f})")
        if self.frame_flops > allowed.frame_flops:
            parts.append(f"one frame of the page would need about {self.frame_flops / 1e9:,.0f} GFLOP (the most "
                         f"is {allowed.frame_flops / 1e9:,.0f})")
        return "; ".join(parts)


BUDGET = StepCost(MAX_STEP_FLOPS, MAX_STEP_BYTES, MAX_FRAME_FLOPS)


def _forward(net: torch.nn.Module, *inputs: Any) -> tuple[float, float]:
    """FLOPs and activation elements of one forward of ``inputs`` (a batch of two samples), per sample."""
    acts = [0]

    def count(module: torch.nn.Module, args: Any, out: Any) -> None:
        if not list(module.children()) and isinstance(out, torch.Tensor):
            acts[0] += out.numel()

    handles = [m.register_forward_hook(count) for m in net.modules()]
    counter = FlopCounterMode(display=False)
    was_training = net.training
    try:
        net.eval()  # BatchNorm statistics untouched
        with torch.no_grad(), counter:
            net(*inputs)
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    return counter.get_total_flops() / 2, acts[0] / 2


def measure(trainer: "Trainer") -> NetCost:
    """The per-sample costs of ``trainer``'s G and D (milliseconds for the page's networks)."""
    cfg = trainer.cfg
    z = torch.zeros(2, cfg.model.latent_dim, device=trainer.device)
    y = trainer.labels(2) if trainer.num_classes else None
    g_flops, g_acts = _forward(trainer.g, z, y)
    x = torch.zeros(2, *trainer.source.shape, device=trainer.device)
    d_flops, d_acts = _forward(trainer.d, x, y)
    params = sum(p.numel() for net in (trainer.g, trainer.d) for p in net.parameters())
    return NetCost(g_flops, d_flops, g_acts, d_acts, params)


def step_cost(nets: NetCost, cfg: Config, image: bool) -> StepCost:
    """The FLOPs and memory of one step of ``cfg`` (its batch size, d_steps and penalties) with ``nets``,
    and the FLOPs of one frame (``image``: the image mode's)."""
    b, k = cfg.train.batch_size, cfg.train.d_steps
    obj = cfg.objective
    penalty = obj.r1_gamma > 0 or obj.r2_gamma > 0 or obj.name == "wgan-gp"
    # a backward costs about two forwards; a penalty's double backward about twice a forward-backward of
    # the batch it is taken on (counted on every D step: lazy ones run at full cost when they run)
    d_step = nets.g_flops * b + 3 * nets.d_flops * 2 * b + (6 * nets.d_flops * b if penalty else 0)
    g_step = 2 * nets.g_flops * b + 3 * nets.d_flops * b
    flops = k * d_step + g_step
    # held at once: G's graph of the batch, D's of the real and the fake batch (the penalty's double
    # backward keeps another); the first real batch's pairwise distances (the health check's
    # nearest-neighbour spread); weights, gradients, Adam's two moments, the EMA and the page's copies
    acts = nets.g_acts * b + nets.d_acts * 2 * b * (2 if penalty else 1)
    distances = b * b
    weights = 8 * nets.params
    if image:  # the grid, and (at most every 10 s) the EMA's statistics re-estimated first
        frame = nets.g_flops * (GRID_SAMPLES + CALIBRATION_SAMPLES)
    else:  # the heat map, the arrows (a forward and a backward), G's samples and the mode metrics' samples
        frame = (nets.d_flops * (VIEW_RESOLUTION ** 2 + 3 * VIEW_POINTS)
                 + nets.g_flops * (VIEW_POINTS + METRIC_SAMPLES))
    return StepCost(flops, FLOAT_BYTES * (acts + distances + weights), frame)
