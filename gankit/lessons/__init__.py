"""Lessons: small declared experiments that answer the tutorials' questions with the normal engine, then a
report whose reading is generated from the measured figures. `gankit lesson --list`, `gankit lesson NAME`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from gankit.lessons.catalog import LESSONS, Lesson, Run, get_lesson
from gankit.lessons.report import write_report
from gankit.lessons.runner import Budget, plan, run_lesson

__all__ = ["LESSONS", "Lesson", "Run", "Budget", "get_lesson", "plan", "run_lesson", "write_report", "lesson",
           "playground_fragment"]


def lesson(name: str, out: str | Path | None = None, *, minutes: float | None = None, seeds: int | None = None,
           quick: bool = False, seconds_per_run: float | None = None, samples: int | None = None,
           log: Callable[[str], None] = print, extra: tuple[str, ...] = ()) -> Path:
    """Run lesson ``name`` into ``out`` (default runs/lessons/NAME) and write its report; returns report.md.
    ``extra``: overrides every run gets (see :func:`gankit.lessons.runner.run_lesson`)."""
    chosen = get_lesson(name)
    budget = plan(chosen, minutes=minutes, seeds=seeds, quick=quick, seconds_per_run=seconds_per_run,
                  samples=samples)
    out = Path(out) if out is not None else Path("runs") / "lessons" / name
    results = run_lesson(chosen, out, budget, log=log, extra=extra)
    return write_report(results, out, chosen.playground)


def playground_fragment(name: str, key: str) -> str:
    """The URL fragment that sets up lesson ``name``'s 2D game ``key`` on the playground page (the page reads
    it on load and applies it, as if set by hand): ``objective.r1_gamma=0.0&...``, values as JSON."""
    import json
    from urllib.parse import quote

    chosen = get_lesson(name)
    if not chosen.playground:
        raise ValueError(f"lesson {name} has no 2D game to play (lessons with one: "
                         f"{', '.join(n for n, l in LESSONS.items() if l.playground)})")
    if key not in chosen.playground:
        raise ValueError(f"lesson {name} has no game {key!r} (choose from {', '.join(chosen.playground)})")
    return "&".join(f"{k}={quote(json.dumps(v))}" for k, v in chosen.playground[key].items())


def describe(name: str) -> dict[str, Any]:
    """What `gankit lesson --list` prints of a lesson: runs, seeds, default minutes."""
    chosen = get_lesson(name)
    return {"name": name, "title": chosen.title, "runs": len(chosen.runs), "seeds": chosen.seeds,
            "minutes": chosen.minutes}
