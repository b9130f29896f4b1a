"""The optimizer mechanics of every game, written once: a game's phase computes a loss; this module sets
which networks take gradients, clears them, runs backward (fp16: through the phase's gradient scaler),
averages them over processes, steps the optimizer and counts the step and the images."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable

from gankit import distributed
from gankit.perf import backward_step

if TYPE_CHECKING:
    from gankit.games.base import Carry, Game, Phase, Stats
    from gankit.run_state import RunState


def train_step(game: Game, run: RunState, between: Callable[[], None] | None = None) -> Stats:
    """One step of ``game``: each phase ``repeat`` times, in order; returns the statistics to log (a repeated
    phase's from its last run). ``between`` is called after each update (the playground answers its page
    there while a long step runs; it may raise to abandon the step)."""
    carry = game.begin_step(run)
    stats: Stats = {}
    for phase in game.phases:
        for i in range(phase.repeat):
            stats.update(run_phase(game, run, phase, carry, i))
            if between is not None:
                between()
    run.step += 1
    return stats


def run_phase(game: Game, run: RunState, phase: Phase, carry: Carry, i: int = 0) -> Stats:
    """The ``i``-th update of ``phase`` (the playground's "D step" and "G step" buttons run one alone)."""
    for name in phase.trains:
        game.nets[name].requires_grad_(True)
    for name in phase.frozen:
        game.nets[name].requires_grad_(False)
    loss, stats = phase.loss(run, carry, i)
    opt = game.optimizers[phase.optimizer]
    opt.zero_grad(set_to_none=True)
    norm = backward_step(loss, opt, game.runtime.perf.scalers.get(phase.optimizer),
                         functools.partial(distributed.average_gradients, game.runtime.dist),
                         grad_norm=game.cfg.log.grad_norms)
    if norm is not None:  # log.grad_norms: as the optimizer applied them (a repeated phase: its last update)
        stats[f"grad_norm_{phase.optimizer}"] = norm
    if phase.after is not None:
        phase.after(run, stats)
    if phase.counts_images:
        run.images_seen += game.cfg.train.batch_size
    return stats


def single_phase(game: Game, run: RunState, name: str) -> Stats:
    """One update of the phase ``name`` alone, as the playground's "D step" and "G step" buttons run it; a
    step's last phase completes a step."""
    phase = next((p for p in game.phases if p.name == name), None)
    if phase is None:
        raise ValueError(f"the game has no phase {name!r} (phases: {', '.join(p.name for p in game.phases)})")
    stats = run_phase(game, run, phase, game.begin_step(run))
    if phase is game.phases[-1]:
        run.step += 1
    return stats
