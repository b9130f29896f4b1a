"""Data-parallel training over processes (``torchrun`` or ``gankit train --nproc N``).

One process per device (``cuda:LOCAL_RANK``, or CPU processes over gloo). How a run is split:

- ``train.batch_size`` is the GLOBAL batch: each of N processes trains on ``batch_size / N`` images of
  it. The batch stream draws the same global permutation in every process and each takes its slice,
  so the data order (and a resume) is that of the single-process run with the same config.
- Latents: every process draws the whole global latent batch from the shared stream (seed + 1, the
  single-process stream) and keeps its slice, so z matches the single-process run too. Per-sample
  noise (instance noise, DiffAugment, gradient-penalty interpolates) and dropout come from streams
  of each process's own, seeded from (train.seed, rank): different in every process.
- Model initialisation is identical (same seed), and rank 0's weights are broadcast once anyway.
- Gradients are averaged with one all_reduce per backward (sum / N), between ``backward`` and the
  optimizer step, instead of wrapping G and D in DistributedDataParallel: a GAN step runs D several
  times before one backward (real, fake, penalty inputs), takes double-backward gradient penalties,
  and runs G's loss through D with D's weights frozen, all of which DDP's hooks assume away. With
  mean losses over equal local batches the average is the global-batch gradient, so a run without
  batch-coupled layers equals the single-process run up to float summation order. What breaks that
  equality: BatchNorm (per-process batch statistics, unless ``perf.sync_batchnorm``), minibatch
  standard deviation and relativistic (``rals``) losses (statistics of the local batch), dropout
  and per-sample noise (per-process streams). The cost of not using DDP: no overlap of gradient
  communication with the backward pass.
- Rank 0 alone logs, writes samples, evaluates and checkpoints; the others skip the I/O, and wait
  at checkpoints, where one collective also tells them whether rank 0's save failed. Log rows are
  averages over processes. Stop requests (signals, max_seconds) are agreed on every step, so every
  process stops after the same step.
- Checkpoints hold rank 0's RNG states at the usual place and every process's under ``rng.ranks``:
  a resume with the same number of processes continues every stream exactly; with another number,
  each process derives its streams from the saved state and its rank (data order and latents still
  continue exactly).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from gankit.config import ConfigError



@dataclass(frozen=True)
class Dist:
    """This process's place in the run; rank 0 of 1 when not distributed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    control: Any = None  # process group for small CPU messages (gloo); None = the default group

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True in one of several processes started by torchrun (WORLD_SIZE > 1 in the environment)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def env_rank() -> int:
    """This process's rank as torchrun announced it (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def setup(device: torch.device) -> Dist:
    """Join the process group torchrun describes in the environment (once per process; the group lives
    until :func:`teardown` or the process's end), or use the one the caller initialised."""
    if dist.is_available() and dist.is_initialized():
        return current()
    if not launched():
        return Dist()
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run a single process")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ConfigError(f"process {env_rank()} needs cuda:{local} but this machine has "
                              f"{torch.cuda.device_count()} GPUs: start at most that many processes per node")
        torch.cuda.set_device(local)
        backend = "cpu:gloo,cuda:nccl"  # gradients over NCCL, small control messages over gloo
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"config: train.device: multi-process training runs on CUDA or CPU, not {device.type}")
    dist.init_process_group(backend=backend)
    return current()


def current() -> Dist:
    """The context of an initialised process group (collective: every process calls it once)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1)))
    backend = str(dist.get_backend())
    control = None if "gloo" in backend or world == 1 else dist.new_group(backend="gloo")
    return Dist(rank, world, local, control)


def teardown() -> None:
    """Leave the process group, if this process is in one, together with the others (the CLI, after a
    normal end of training): a gloo process that exits while its peers still hold connections to it
    can abort in its exit handlers."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sync_batchnorm(device: torch.device, *nets: torch.nn.Module) -> list[torch.nn.Module]:
    """``perf.sync_batchnorm``: BatchNorm over the global batch. The parameters stay the same objects,
    so optimizers built before still hold them."""
    if device.type != "cuda":
        raise ConfigError("config: perf.sync_batchnorm: PyTorch's SyncBatchNorm runs on CUDA only (set it to false)")
    return [torch.nn.SyncBatchNorm.convert_sync_batchnorm(net) for net in nets]


def check_split(batch_size: int, world_size: int) -> None:
    """``train.batch_size`` is the global batch: it must split evenly between the processes."""
    if batch_size % world_size:
        raise ConfigError(f"config: train.batch_size: {batch_size} is the global batch of {world_size} processes "
                          f"and must be divisible by {world_size}")


def place(ctx: Dist, device: torch.device) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` when a distributed run trains on CUDA."""
    if not ctx.enabled or device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"config: train.device: multi-process training runs on CUDA or CPU, not {device.type}")
    if device.index is not None:
        raise ConfigError(f"config: train.device {device} names one GPU, but each process of a multi-process "
                          "run takes its own (cuda:LOCAL_RANK): set train.device to auto or cuda")
    if ctx.local_rank >= torch.cuda.device_count():
        raise ConfigError(f"process {ctx.rank} needs cuda:{ctx.local_rank} but this machine has "
                          f"{torch.cuda.device_count()} GPUs: start at most that many processes per node")
    return torch.device("cuda", ctx.local_rank)


# ---------------------------------------------------------------------------------------------
# Collectives


def _coalesced(tensors: Sequence[torch.Tensor], op: Callable[[torch.Tensor], None]) -> None:
    """Run ``op`` on one flat buffer per dtype holding ``tensors`` and copy the result back: one
    collective instead of one per tensor, whatever the tensors' memory layout."""
    groups: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault(t.dtype, []).append(t)
    for group in groups.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        op(flat)
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view(t.shape))
            offset += t.numel()


@torch.no_grad()
def broadcast_modules(ctx: Dist, *modules: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers in every process (initialisation is seeded alike anyway)."""
    if not ctx.enabled:
        return
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    _coalesced(tensors, lambda flat: dist.broadcast(flat, src=0))


@torch.no_grad()
def average_gradients(ctx: Dist, optimizer: torch.optim.Optimizer) -> None:
    """Replace each gradient the optimizer will apply by its mean over processes. Every process runs the
    same control flow, so the same parameters have gradients everywhere."""
    if not ctx.enabled:
        return
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]

    def mean(flat: torch.Tensor) -> None:
        dist.all_reduce(flat)  # gloo has no AVG: sum, then divide
        flat.div_(ctx.world_size)

    _coalesced(grads, mean)


@torch.no_grad()
def average_stats(ctx: Dist, sums: dict[str, torch.Tensor]) -> None:
    """Average a log window's per-statistic sums over processes, in place, so that every process logs
    (and judges finiteness on) the same, global-batch numbers."""
    if not ctx.enabled or not sums:
        return
    keys = sorted(sums)
    flat = torch.stack([sums[k].detach().float().reshape(()) for k in keys])
    dist.all_reduce(flat)
    flat.div_(ctx.world_size)
    for k, v in zip(keys, flat):
        sums[k] = v


def any_of(ctx: Dist, *flags: bool) -> tuple[bool, ...]:
    """Each flag, raised if any process raised it (over the CPU control group: no GPU sync)."""
    if not ctx.enabled:
        return flags
    t = torch.tensor([float(f) for f in flags])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=ctx.control)
    return tuple(bool(v) for v in t)


def stop_reason(ctx: Dist, t0: float, max_seconds: float | None, stop: Any) -> str | None:
    """"max_seconds", "interrupt" or None, agreed by every process (each has its own clock and signals)."""
    out_of_time = max_seconds is not None and time.perf_counter() - t0 >= max_seconds
    interrupted = not out_of_time and stop is not None and bool(getattr(stop, "requested", False))
    out_of_time, interrupted = any_of(ctx, out_of_time, interrupted)
    return "max_seconds" if out_of_time else "interrupt" if interrupted else None


def broadcast_object(ctx: Dist, obj: Any) -> Any:
    """Rank 0's ``obj`` (e.g. the run directory, which holds a timestamp) in every process."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=ctx.control)
    return box[0]


def launch(nproc: int, argv: Sequence[str]) -> int:
    """``gankit train --nproc N``: run ``python -m gankit <argv>`` in N local processes with torchrun's
    elastic launcher, from this process; returns the exit code (the first failed process's).

    The workers start in their own session: a Ctrl-C reaches them once, forwarded by the launcher, so
    each finishes its step and rank 0 checkpoints, as in a single-process run."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # torchrun would set 1 thread per process (and warn); share the cores instead
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    os.environ.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "120")  # time to save after a Ctrl-C
    try:
        run(parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "gankit", *argv]))
    except ChildFailedError as exc:
        _, first = exc.get_first_failure()
        return first.exitcode if first.exitcode > 0 else 1
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0
