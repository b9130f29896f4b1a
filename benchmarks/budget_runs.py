"""Fixed-budget quality runs through the CLI only: `gankit train --max-seconds`, then `gankit eval` (and
`gankit sample --truncation` + `gankit eval` for a truncation sweep). Prints a table and writes JSON.

    python benchmarks/budget_runs.py --configs configs/mnist_stylegan.yaml configs/mnist_dcgan.yaml \
        --seconds 900 --jobs 2 --threads 1 --json benchmarks/results/x.json

With ``--jobs 2 --threads 1`` on a 2-core machine every run has one core to itself for the same wall
clock, so runs started together are measured in the same conditions (pin them with ``taskset`` when
something else runs). ``train.steps`` is raised so the time budget, not the preset's step count, ends
every run, unless ``--keep-steps`` (presets with a linear decay to their last step). ``--seeds``,
``--raw`` (the raw G beside its EMA), ``--truncation``, ``--drs`` (rejection sampling) and
``--density-filter`` add rows;
with several seeds the means are printed too. ``--ref auto`` measures each run against its own
``data.name``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

COLUMNS = [("steps", "steps", "d"), ("fid", "FID", ".2f"), ("precision", "prec", ".3f"), ("recall", "recall", ".3f"),
           ("classes_present", "classes", "d"), ("class_kl", "class KL", ".4f"), ("class_agreement", "agree", ".3f"),
           ("modes", "modes", "d"), ("kl", "KL", ".4f"), ("digit_kl", "digit KL", ".4f"),
           ("dependence", "dep", ".4f"), ("high_quality", "HQ", ".4f"),
           ("reverse_kl", "rev KL", ".4f"), ("spread", "spread", ".3f")]


def gankit(*args: str) -> list[str]:
    return [sys.executable, "-m", "gankit", *args]


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    if threads:  # 0: gankit's own choice (train.threads auto)
        env["OMP_NUM_THREADS"] = str(threads)
        env["MKL_NUM_THREADS"] = str(threads)
    return env


def train_cmd(config: str, run_dir: Path, seconds: float, threads: int, extra: list[str],
              keep_steps: bool) -> list[str]:
    steps = [] if keep_steps else ["train.steps=100000000"]
    return gankit("train", config, "--run-dir", str(run_dir), "--max-seconds", str(seconds), "--set",
                  "log.progress=false", *([f"train.threads={threads}"] if threads else []), *steps, *extra)


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
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads per training run (0: train.threads auto, measured by gankit)")
    parser.add_argument("--ref", default="auto", help="reference dataset (auto: each run's data.name)")
    parser.add_argument("--metrics", default="fid,pr,classes",
                        help="gankit eval --metrics (class_agreement is added for conditional runs)")
    parser.add_argument("--num", type=int, default=10_000)
    parser.add_argument("--truncation", type=float, nargs="*", default=[],
                        help="also evaluate samples at these truncation psi values")
    parser.add_argument("--set", dest="extra", nargs="*", default=[], help="extra --set overrides for every run")
    parser.add_argument("--out-dir", default="benchmarks/out/budget")
    parser.add_argument("--json")
    parser.add_argument("--eval-only", action="store_true", help="reuse the runs already in --out-dir")
    parser.add_argument("--seeds", type=int, nargs="*", help="one run per train.seed (default: the config's)")
    parser.add_argument("--keep-steps", action="store_true",
                        help="keep the configs' train.steps (default: raise it so the budget ends each run)")
    parser.add_argument("--raw", action="store_true", help="also evaluate the raw G, not only its EMA")
    parser.add_argument("--drs", type=float, nargs="*", default=[],
                        help="also evaluate `gankit sample --drs PCT` (discriminator rejection sampling)")
    parser.add_argument("--drs-calibrate", type=int, default=0, help="with --drs: `--drs-calibrate STEPS`")
    parser.add_argument("--density-filter", type=float, nargs="*", default=[],
                        help="also evaluate `gankit sample --density-filter PCT` (G's own density)")
    parser.add_argument("--tag", default="", help="suffix of the run names (variants side by side)")
    args = parser.parse_args()

    out_dir = Path(args.out_dir)
    runs: dict[str, tuple[str, list[str]]] = {}
    for config in args.configs:
        for seed in args.seeds or [None]:
            name = Path(config).stem + args.tag + ("" if seed is None else f"-s{seed}")
            runs[name] = (config, [] if seed is None else [f"train.seed={seed}"])
    walls: dict[str, float] = {}
    if not args.eval_only:
        cmds = []
        for name, (config, seed_set) in runs.items():
            run_dir = out_dir / name
            if run_dir.exists():
                shutil.rmtree(run_dir)
            cmds.append((name, train_cmd(config, run_dir, args.seconds, args.threads, [*args.extra, *seed_set],
                                         args.keep_steps), out_dir / f"{name}.log"))
        walls = run_parallel(cmds, args.jobs, args.threads)

    rows = []
    for name, (config, _) in runs.items():
        run_dir = out_dir / name
        metrics = args.metrics
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        if saved["model"].get("conditional") and "class_agreement" not in metrics:
            metrics += ",class_agreement"
        ref = saved["data"]["name"] if args.ref == "auto" else args.ref
        result = evaluate(run_dir, ref, metrics, args.num, out_dir / f"{name}.eval.json")
        found = re.search(r"at step (\d+)", result["info"]["samples"])
        row = {"name": name, "config": config, "set": args.extra, "budget_s": args.seconds,
               "threads": args.threads, "jobs": args.jobs, "wall_s": walls.get(name), "psi": 1.0, "g": "ema",
               "steps": int(found.group(1)) if found else None, **result}
        rows.append(row)
        variants = [(f"psi{psi}", ["--truncation", str(psi)], {"psi": psi}) for psi in args.truncation]
        if args.raw:
            variants.append(("raw", ["--no-ema"], {"g": "raw"}))
        cal = ["--drs-calibrate", str(args.drs_calibrate)] if args.drs_calibrate else []
        cal_tag = f"c{args.drs_calibrate}" if args.drs_calibrate else ""
        variants += [(f"drs{pct:g}{cal_tag}", ["--drs", str(pct), *cal], {"g": f"drs{pct:g}{cal_tag}"})
                     for pct in args.drs]
        variants += [(f"density{pct:g}", ["--density-filter", str(pct)], {"g": f"density{pct:g}"})
                     for pct in args.density_filter]
        for tag, flags, fields in variants:
            npz = out_dir / f"{name}.{tag}.npz"
            subprocess.run(gankit("sample", str(run_dir), "--num", str(args.num), *flags, "--out", str(npz)),
                           check=True, stdout=subprocess.DEVNULL)
            res = evaluate(npz, ref, metrics, args.num, out_dir / f"{name}.{tag}.eval.json")
            rows.append({**row, **res, **fields})
            npz.unlink()

    print(f"\n{args.num} samples, budget {args.seconds:.0f} s per run "
          f"({args.jobs} at a time, {args.threads} thread(s) each), `gankit eval --metrics {args.metrics}`"
          + (f", --set {' '.join(args.extra)}" if args.extra else ""))
    columns = [(key, head, spec) for key, head, spec in COLUMNS if any(r.get(key) is not None for r in rows)]
    print(f"{'run':30} {'G':>9} {'psi':>4} {'wall':>6} " + " ".join(f"{head:>8}" for _, head, _ in columns))
    for r in rows:
        cells = [format(r[key], spec) if r.get(key) is not None else "-" for key, _, spec in columns]
        wall = f"{r['wall_s']:.0f}" if r.get("wall_s") else "-"
        print(f"{r['name']:30} {r['g']:>9} {r['psi']:4.1f} {wall:>6} " + " ".join(f"{c:>8}" for c in cells))
    if args.seeds and len(args.seeds) > 1:
        print(f"mean over seeds {args.seeds}:")
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            groups.setdefault((Path(r["config"]).stem + args.tag, r["g"], r["psi"]), []).append(r)
        for (name, g, psi), group in groups.items():
            cells = []
            for key, _, spec in columns:
                values = [r[key] for r in group if r.get(key) is not None]
                cells.append(format(sum(values) / len(values), spec.replace("d", ".1f")) if values else "-")
            print(f"{name:30} {g:>9} {psi:4.1f} {'':>6} " + " ".join(f"{c:>8}" for c in cells))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"runs": rows}, indent=2))


if __name__ == "__main__":
    main()
