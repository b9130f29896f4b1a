"""Run a lesson: every run x seed through the public ``gankit.train.train`` with a time budget, each measured
from its run directory, then the report (gankit.lessons.report). Runs are one at a time, one thread each,
so runs compete for nothing but their budget."""
from __future__ import annotations

import os
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gankit.config import scheduled_to_last_step
from gankit.lessons import measures
from gankit.lessons.catalog import Lesson, Run
from gankit.presets import load_config

QUICK_MINUTES = 2.0
RUN_OVERHEAD_S = 5.0  # per run: building it, the thread-free start, measuring its samples
MIN_SECONDS = 1.0
SAMPLES = {"digits": 2000, "ring": 2500}
QUICK_SAMPLES = 1000
MARKER = ".gankit-lesson"  # a folder a lesson wrote: the only kind it clears and reuses
# what the report's commands leave out: display and bookkeeping only, no effect on the training
QUIET = ("log.progress=false", "log.tensorboard=false", "log.sample_every=0", "log.plot=false",
         "health.alarms=false", "checkpoint.every=1000000000")


@dataclass(frozen=True)
class Budget:
    seconds_per_run: float
    seeds: int
    samples: int
    minutes: float


def plan(lesson: Lesson, *, minutes: float | None = None, seeds: int | None = None, quick: bool = False,
         seconds_per_run: float | None = None, samples: int | None = None) -> Budget:
    """The budget: ``minutes`` for the whole lesson (default the lesson's, 2 with ``quick``) shared by its
    runs x seeds, less each run's overhead; ``seconds_per_run`` sets it directly."""
    if minutes is not None and minutes <= 0:
        raise ValueError(f"--minutes must be > 0, got {minutes:g}")
    if seeds is not None and seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    seeds = seeds or lesson.seeds
    minutes = minutes or (QUICK_MINUTES if quick else lesson.minutes)
    count = len(lesson.runs) * seeds
    per_run = seconds_per_run or max(MIN_SECONDS, minutes * 60 / count - RUN_OVERHEAD_S)
    default_samples = QUICK_SAMPLES if quick else SAMPLES[lesson.data]
    return Budget(round(per_run, 1), seeds, samples or default_samples, minutes)


def overrides(lesson: Lesson, run: Run, seed: int, extra: tuple[str, ...] = ()) -> list[str]:
    """The --set list of one run's command: its own, the lesson's, the seed, one thread, then ``extra``."""
    return [*run.overrides, *lesson.settings, f"train.seed={seed}", "train.threads=1", *extra]


def command(lesson: Lesson, run: Run, seed: int, seconds: float, run_dir: str, extra: tuple[str, ...] = ()) -> str:
    """The `gankit train` command that trains this run as the lesson did (display settings aside)."""
    return shlex.join(["gankit", "train", run.base, "--run-dir", run_dir, "--max-seconds", f"{seconds:g}",
                       "--set", *overrides(lesson, run, seed, extra)])


def config(lesson: Lesson, run: Run, seed: int, seconds: float, extra: tuple[str, ...] = ()) -> Any:
    """The config ``command`` trains: as `gankit train --max-seconds` builds it (a budget without a step
    target trains for the whole budget unless a schedule counts down to the preset's last step)."""
    sets = [*overrides(lesson, run, seed, extra), f"train.max_seconds={seconds:g}", *QUIET]
    cfg = load_config(run.base, sets)
    if not scheduled_to_last_step(cfg):
        cfg = load_config(run.base, [*sets, "train.steps=null", "train.epochs=null"])
    return cfg


def _load() -> float | None:
    """The 1-minute load average (busy cores; other jobs on the machine slow every run's steps), or None."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on this platform
        return None


def prepare_out(out: Path) -> None:
    """``out`` empty, missing, or an earlier lesson's folder; anything else is refused (nothing is removed)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ValueError(f"--out {out} holds files that no lesson wrote; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by gankit lesson; its runs/ are replaced by the next lesson run here\n")
    if (out / "runs").is_dir():
        shutil.rmtree(out / "runs")


def run_lesson(lesson: Lesson, out: str | Path, budget: Budget, log: Callable[[str], None] = print,
               extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train and measure every run x seed into ``out``/runs; returns the lesson's results (report.json's
    content without the reading). ``extra``: overrides every run gets after the lesson's (tests: a
    smaller batch), shown in the commands too."""
    from gankit.train import TrainError, train

    out = Path(out)
    prepare_out(out)
    t0, load = time.perf_counter(), [_load()]
    runs: list[dict[str, Any]] = []
    total, done = len(lesson.runs) * budget.seeds, 0
    for key, run in lesson.runs.items():
        seeds = []
        for seed in range(budget.seeds):
            done += 1
            run_dir = out / "runs" / f"{key}-s{seed}"
            shown_dir = f"runs/lessons/{lesson.name}/{key}-s{seed}"
            start = time.perf_counter()
            entry: dict[str, Any] = {"seed": seed, "command": command(lesson, run, seed, budget.seconds_per_run,
                                                                      shown_dir, extra)}
            try:
                result = train(config(lesson, run, seed, budget.seconds_per_run, extra), run_dir)
                entry["stopped_by"] = result.stopped_by
                entry.update(measures.from_log(run_dir, lesson.early_steps))
                entry.update(measures.quality(run_dir, lesson.data, budget.samples))
            except TrainError as exc:
                entry.update({"stopped_by": "diverged", "error": str(exc),
                              **measures.from_log(run_dir, lesson.early_steps)})
            entry["wall_seconds"] = round(time.perf_counter() - start, 1)
            seeds.append(entry)
            headline = lesson.measures[0]
            log(f"gankit: lesson {lesson.name}: {done}/{total} {key} seed {seed}: {entry.get('steps', 0)} steps, "
                f"{headline} {measures.fmt(entry.get(headline), measures.MEASURES[headline].integer)}, "
                f"{entry['wall_seconds']:g} s")
        runs.append({"key": key, "label": run.label, "base": run.base, "overrides": list(run.overrides),
                     "seeds": seeds})
    names = list(dict.fromkeys([*lesson.measures, "rollbacks"]))
    figures = {r["key"]: {m: measures.aggregate([s.get(m) for s in r["seeds"]]) for m in names} for r in runs}
    return {"lesson": lesson.name, "title": lesson.title, "question": lesson.question, "tutorial": lesson.tutorial,
            "data": lesson.data, "measures": names,
            "labels": {m: measures.label(m, lesson.early_steps, budget.samples) for m in names},
            "budget": {"seconds_per_run": budget.seconds_per_run, "seeds": budget.seeds, "samples": budget.samples,
                       "minutes": budget.minutes, "early_steps": lesson.early_steps,
                       "wall_seconds": round(time.perf_counter() - t0, 1), "load_average": [*load, _load()],
                       "cpus": os.cpu_count()},
            "runs": runs, "figures": figures}
