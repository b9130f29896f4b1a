"""The loop's step for benchmarks that time or profile it outside `gankit train`: each game keeps one run
state (its step counter drives the schedules and lazy penalties, as in a real run)."""
from __future__ import annotations

from typing import Any

from gankit.run_state import RunState

_RUNS: dict[int, tuple[Any, RunState]] = {}


def run_of(game: Any, total: int | None) -> RunState:
    """The run state of ``game`` (made on first use with ``total`` steps)."""
    kept = _RUNS.get(id(game))
    if kept is None or kept[0] is not game:  # an id reused after a game was freed
        kept = _RUNS[id(game)] = (game, RunState(total=total, noise_horizon=total))
    return kept[1]
