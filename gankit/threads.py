"""CPU threads chosen by measurement at the start of a run (``train.threads: null`` on the CPU).

A small GAN gains from a second OpenMP thread only while it has the cores to itself: measured on a
2-core CPU (benchmarks/contention.py, RESULTS.md "Speed beside other work"), the default DCGAN runs
15.6 steps/s on 2 threads and 10.1 on one, but two such runs side by side kept 13-24 % of that each,
because every thread spin-waits at each barrier for a partner the other process has descheduled;
with one thread each they kept ~100 % of the one-thread rate. So before the first step the run times a
few forward and backward passes of copies of G and D on every core and on one, and trains with the
faster. The copies and a private random stream leave the run's weights, statistics and random state
untouched.

The thread count can change the last bits of some kernels (fully connected layers, StyleGAN's
modulated convolutions): a checkpoint records the count and a resumed run keeps it, so resume stays
bit-exact. The choice is not revisited while a run trains; ``train.threads`` fixes it.
"""
from __future__ import annotations

import copy
import os
import time
from typing import Callable

import torch
import torch.nn as nn

from gankit.distributed import Dist


def available_cores() -> int:
    """The cores this process may run on (taskset and cgroup cpusets included)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fixed_threads(threads: int | None, device: torch.device, dist: Dist) -> int | None:
    """train.threads, or None where :func:`~gankit.threads.choose_threads` decides by measurement: auto,
    on the CPU, one process with several cores. Processes of a multi-process CPU run share the cores."""
    if threads:
        return threads
    if device.type != "cpu":
        return None
    cores = available_cores()
    if dist.enabled or cores < 2:
        return max(1, cores // dist.world_size)
    return None


def probe_work(g: nn.Module, d: nn.Module, latent_dim: int, data_shape: tuple[int, ...], batch: int,
               num_classes: int | None, device: torch.device) -> Callable[[], None]:
    """One training-like pass (G forward, D on fakes and reals, backward) on copies of G and D."""
    g, d = copy.deepcopy(g).train(), copy.deepcopy(d).train()
    gen = torch.Generator(device=device).manual_seed(0)
    z = torch.randn(batch, latent_dim, generator=gen, device=device)
    x = torch.randn(batch, *data_shape, generator=gen, device=device)
    y = None if not num_classes else torch.randint(num_classes, (batch,), generator=gen, device=device)

    def work() -> None:
        with torch.random.fork_rng(devices=[]):  # dropout draws from the global stream: give it back
            loss = d(g(z, y), y).float().mean() - d(x, y).float().mean()
            loss.backward()
        g.zero_grad(set_to_none=True)
        d.zero_grad(set_to_none=True)

    return work


def choose_threads(work: Callable[[], None], cores: int, *, seconds: float = 0.25, rounds: int = 2,
                   budget: float | None = None,
                   clock: Callable[[], float] = time.perf_counter) -> tuple[int, dict[int, float]]:
    """The faster of ``cores`` threads and one for ``work``, and the passes per second of each.

    Each setting is timed ``rounds`` times, alternating, for at least ``seconds`` and two passes after
    one untimed warm-up pass, so a neighbour that starts or stops mid-probe affects both alike. All
    cores win ties and small margins (a tenth): a second thread that buys nothing is still harmless
    when the machine is quiet. ``budget``: the seconds the whole probe may take; when one pass on all
    cores shows it would take longer, nothing more is timed and all cores are kept (the estimated
    seconds of the probe come back under the key 0)."""
    previous = torch.get_num_threads()
    if cores < 2:
        return 1, {}
    passes = {cores: 0, 1: 0}
    spent = {cores: 0.0, 1: 0.0}
    try:
        torch.set_num_threads(cores)
        start = clock()
        work()  # the first warm-up pass, timed to know what the probe would cost
        first = clock() - start
        # per setting and round: a warm-up and at least two passes, one thread taking up to `cores` times longer
        estimate = rounds * (1 + cores) * max(3 * first, seconds + first)
        if budget is not None and estimate > budget:
            return cores, {0: estimate}
        for r in range(rounds):
            for n in (cores, 1):
                torch.set_num_threads(n)
                if r or n != cores:
                    work()
                start, count = clock(), 0
                while count < 2 or clock() - start < seconds:
                    work()
                    count += 1
                passes[n] += count
                spent[n] += clock() - start
    finally:
        torch.set_num_threads(previous)
    rates = {n: passes[n] / max(spent[n], 1e-9) for n in passes}
    return (1 if rates[1] > 1.1 * rates[cores] else cores), rates
