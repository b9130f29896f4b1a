"""Rebuild the model zoo (gankit/zoo/NAME): train each entry from its preset through the CLI, measure it
with `gankit eval`, export it as an hf folder with the metrics in its model card.

    nice -n 19 python benchmarks/build_zoo.py                 # every entry, one after another
    nice -n 19 python benchmarks/build_zoo.py ring --time-scale 0.1   # a quick check (not shipped numbers)

Each entry's `gankit eval --json` result goes to benchmarks/results/zoo_<name>.json and the summary to
benchmarks/results/zoo.json; the table printed at the end (`gankit zoo --markdown`) is the README's.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from gankit.export import export
from gankit.sampling import load_generator

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "gankit" / "zoo"
RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Entry:
    name: str
    config: str
    what: str
    ref: str
    metrics: list[str] | None = None  # None: gankit eval's defaults for the reference
    num: int = 10_000
    steps: int | None = None  # a step budget (reproducible on a busy machine), else the config's steps
    overrides: list[str] = field(default_factory=list)


ENTRIES = [
    Entry("ring", "configs/ring.yaml", "8 Gaussians on a ring (2D points), MLP G", "ring", ["modes2d"], 2500),
    # the default preset, which on the labelled digits is class-conditional (model.conditional auto): the best
    # measured MNIST model and the conditional one at once. 3,000 steps: about what 300 s of one idle core
    # reaches (benchmarks/results/quality_vs_time.json); a step budget gives the same model on any machine.
    Entry("mnist", "configs/mnist_dcgan.yaml", "the default DCGAN, class-conditional, 28 px digits", "mnist10k",
          steps=3000, overrides=["train.threads=1"]),
]


def gankit(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "gankit", *args], check=True, cwd=ROOT)


def build(entry: Entry, runs: Path, time_scale: float, export_only: bool = False, resume: bool = False) -> dict:
    run = runs / entry.name
    budget = ["--steps", str(max(10, int(entry.steps * time_scale)))] if entry.steps else []
    if not entry.steps and time_scale != 1:
        budget = ["--steps", str(max(10, int(10_000 * time_scale)))]
    result_json = RESULTS / f"zoo_{entry.name}.json"
    previous = ZOO / entry.name / "zoo.json"
    wall = json.loads(previous.read_text())["train_seconds"] if export_only and previous.is_file() else None
    if not export_only:  # else: the run and its eval JSON from an earlier build, exported again
        if not resume:  # resume: continue an interrupted build's run (bit-exact, as if never stopped)
            shutil.rmtree(run, ignore_errors=True)
        t0 = time.time()
        gankit("train", entry.config, "--run-dir", str(run), *budget, *(["--resume"] if resume else []), "--set",
               "log.progress=false", "train.device=cpu", *entry.overrides)
        wall = round(time.time() - t0, 1)
        gankit("eval", str(run), "--ref", entry.ref, "--num", str(entry.num), "--device", "cpu", "--json",
               str(result_json), *(["--metrics", ",".join(entry.metrics)] if entry.metrics else []))
    out = ZOO / entry.name
    shutil.rmtree(out, ignore_errors=True)
    result = json.loads(result_json.read_text())
    sets = ["--set", *entry.overrides] if entry.overrides else []
    command = " ".join(["gankit train", entry.config, *budget, *sets])
    export(load_generator(run, device="cpu"), "hf", out, name=f"zoo:{entry.name}", metrics=result, source=command)
    step = json.loads((out / "config.json").read_text())["step"]
    keep = ("fid", "precision", "recall", "class_agreement", "classes_covered", "modes", "high_quality", "reverse_kl")
    info = {"what": entry.what, "config": entry.config, "trained_with": command, "steps": step,
            "train_seconds": wall,
            "metrics": {k: result[k] for k in keep if isinstance(result.get(k), (int, float))},
            "result": str(result_json.relative_to(ROOT))}
    (out / "zoo.json").write_text(json.dumps(info, indent=2) + "\n")
    info["bytes"] = sum(p.stat().st_size for p in out.iterdir())
    return {"name": entry.name, **info}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="entries to build (default: all)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply budgets (quick checks)")
    parser.add_argument("--runs", default="runs/zoo", help="training runs go here (default runs/zoo)")
    parser.add_argument("--export-only", action="store_true", help="re-export the runs of an earlier build")
    parser.add_argument("--resume", action="store_true", help="continue the runs of an interrupted build")
    args = parser.parse_args()
    chosen = [e for e in ENTRIES if not args.names or e.name in args.names]
    rows = [build(e, ROOT / args.runs, args.time_scale, args.export_only, args.resume) for e in chosen]
    summary = RESULTS / "zoo.json"
    old = {r["name"]: r for r in json.loads(summary.read_text())} if summary.is_file() else {}
    old.update({r["name"]: r for r in rows})
    summary.write_text(json.dumps(list(old.values()), indent=2) + "\n")
    gankit("zoo", "--markdown")  # the README's table


if __name__ == "__main__":
    main()
