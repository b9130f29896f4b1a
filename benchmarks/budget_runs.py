"""Fixed-budget quality runs through the CLI only: `gankit train --max-seconds`, then `gankit eval` (and
`gankit sample --truncation` + `gankit eval` for a truncation sweep). Prints a table and writes JSON.

    python benchmarks/budget_runs.py --configs configs/mnist_stylegan.yaml configs/mnist_dcgan.yaml \
        --seconds 900 --jobs 2 --threads 1 --json benchmarks/results/x.json

With ``--jobs 2 --threads 1`` on a 2-core machine every run has one core to itself for the same wall
clock, so runs started together are measured in the same conditions. ``train.steps`` is raised so the
time budget, not the preset's step count, ends every run.
"""
from __future__ import annotations

import argparse
import json
import re
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml


COLUMNS = [("steps", "steps", "d"), ("fid", "FID", ".2f"), ("precision", "prec", ".3f"), ("recall", "recall", ".3f"),
           ("classes_present", "classes", "d"), ("class_kl", "class KL", ".4f"), ("class_agreement", "agree", ".3f"),
           ("modes", "modes", "d"), ("kl", "KL", ".4f")]


def gankit(*args: str) -> list[str]:
    return [sys.executable, "-m", "gankit", *args]


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    return env


def train_cmd(config: str, run_dir: Path, seconds: float, threads: int, extra: list[str]) -> list[str]:
    return gankit("train", config, "--run-dir", str(run_dir), "--max-seconds", str(seconds), "--set",
                  "log.progress=false", f"train.threads={threads}", "train.steps=100000000", *extra)


def run_parallel(cmds: list[tuple[str, list[str], Path]], jobs: int, threads: int) -> dict[str, float]:
    """Run (name, argv, log) commands ``jobs`` at a time; returns each one's wall time."""
    pending, running, walls = list(cmds), {}, {}
    while pending or running:
        while pending and len(running) < jobs:
            name, argv, log = pending.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env=child_env(threads))
            running[name] = (proc, time.time())
        time.sleep(1.0)
        for name, (proc, t0) in list(running.items()):
            if proc.poll() is not None:
                if proc.returncode != 0:
                    raise SystemExit(f"{name} failed (exit {proc.returncode}); see its log")
                walls[name] = round(time.time() - t0, 1)
                del running[name]
    return walls


def evaluate(source: Path, ref: str, metrics: str, num: int, out: Path) -> dict:
    subprocess.run(gankit("eval", str(source), "--ref", ref, "--metrics", metrics, "--num", str(num),
                          "--json", str(out)), check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--jobs", type=int, default=1, help="training runs at a time")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per training run")
    parser.add_argument("--ref", default="mnist10k")
    parser.add_argument("--metrics", default="fid,pr,classes",
                        help="gankit eval --metrics (class_agreement is added for conditional runs)")
    parser.add_argument("--num", type=int, default=10_000)
    parser.add_argument("--truncation", type=float, nargs="*", default=[],
                        help="also evaluate samples at these truncation psi values")
    parser.add_argument("--set", dest="extra", nargs="*", default=[], help="extra --set overrides for every run")
    parser.add_argument("--out-dir", default="benchmarks/out/budget")
    parser.add_argument("--json")
    parser.add_argument("--eval-only", action="store_true", help="reuse the runs already in --out-dir")
    args = parser.parse_args()

    out_dir = Path(args.out_dir)
    runs = {Path(c).stem: c for c in args.configs}
    walls: dict[str, float] = {}
    if not args.eval_only:
        cmds = []
        for name, config in runs.items():
            run_dir = out_dir / name
            if run_dir.exists():
                shutil.rmtree(run_dir)
            cmds.append((name, train_cmd(config, run_dir, args.seconds, args.threads, args.extra),
                         out_dir / f"{name}.log"))
        walls = run_parallel(cmds, args.jobs, args.threads)

    rows = []
    for name in runs:
        run_dir = out_dir / name
        metrics = args.metrics
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        if saved["model"].get("conditional") and "class_agreement" not in metrics:
            metrics += ",class_agreement"
        result = evaluate(run_dir, args.ref, metrics, args.num, out_dir / f"{name}.eval.json")
        row = {"name": name, "config": runs[name], "budget_s": args.seconds, "threads": args.threads,
               "jobs": args.jobs, "wall_s": walls.get(name), "psi": 1.0, **result}
        found = re.search(r"at step (\d+)", result["info"]["samples"])
        row["steps"] = int(found.group(1)) if found else None
        rows.append(row)
        for psi in args.truncation:
            npz = out_dir / f"{name}.psi{psi}.npz"
            subprocess.run(gankit("sample", str(run_dir), "--num", str(args.num), "--truncation", str(psi),
                                  "--out", str(npz)), check=True, stdout=subprocess.DEVNULL)
            res = evaluate(npz, args.ref, metrics, args.num, out_dir / f"{name}.psi{psi}.eval.json")
            rows.append({**row, **res, "psi": psi})
            npz.unlink()

    print(f"\n{args.ref}, {args.num} samples, budget {args.seconds:.0f} s per run "
          f"({args.jobs} at a time, {args.threads} thread(s) each), `gankit eval --metrics {args.metrics}`")
    columns = [(key, head, spec) for key, head, spec in COLUMNS if any(r.get(key) is not None for r in rows)]
    print(f"{'run':28} {'psi':>4} " + " ".join(f"{head:>8}" for _, head, _ in columns))
    for r in rows:
        cells = [format(r[key], spec) if r.get(key) is not None else "-" for key, _, spec in columns]
        print(f"{r['name']:28} {r['psi']:4.1f} " + " ".join(f"{c:>8}" for c in cells))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"runs": rows}, indent=2))


if __name__ == "__main__":
    main()
