"""FID against wall-clock seconds: what a learner gets from 1, 2, 5 and 15 minutes of a 2-core CPU.

    python benchmarks/quality_vs_time.py --json benchmarks/results/quality_vs_time.json --plot docs/fid_vs_time.png

Each run trains through the CLI in segments that end at the budgets (60, 120, 300, 900 s by default):
`gankit train CONFIG --max-seconds 60`, then `--resume --max-seconds 60`, `--resume --max-seconds 180`, ...
(resume is bit-exact, so this is one run cut at those times, its set-up paid again at each). After each
segment `gankit eval RUN --ref mnist10k --metrics fid,classes` measures 10,000 samples (the EMA G when
the run keeps one) in the feature space of gankit's digit classifier, mnist-cnn. Runs go two at a
time, one core each (`--threads 1`, pinned with taskset when it is there), so the default and the
tutorial it replaces train side by side in the same conditions.

``folder`` is the user's path: `gankit train --data DIR` on the same 10,000 digits written as PNG files
without labels. ``--merge`` keeps an earlier JSON's rows of the runs not measured now (each row keeps its
date), so one line can be added to the plot:

    taskset -c 0 python benchmarks/quality_vs_time.py --runs folder --jobs 1 --merge \
        benchmarks/results/quality_vs_time.json --json benchmarks/results/quality_vs_time.json --plot docs/fid_vs_time.png
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = {"default": ["configs/mnist_dcgan.yaml"], "seed004": ["configs/seeds/seed004_dcgan_mnist.yaml"],
        "stylegan": ["configs/mnist_stylegan.yaml"], "seed000": ["configs/seeds/seed000_mlp_mnist.yaml"],
        # the user's path: the same digits as PNG files without labels (benchmarks/own_folder.py writes them)
        "folder": ["--data", "{digits}"]}


def gankit(*args: str) -> list[str]:
    return [sys.executable, "-m", "gankit", *args]


def run_segments(name: str, config: list[str], budgets: list[float], out: Path, threads: int, core: int | None,
                 num: int, extra: list[str]) -> list[dict]:
    run_dir = out / name
    shutil.rmtree(run_dir, ignore_errors=True)
    pin = ["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows, done = [], 0.0
    for budget in budgets:
        argv = [str(ROOT / a) if a.endswith(".yaml") else a.format(digits=out / "my_digits") for a in config]
        cmd = pin + gankit("train", *argv, "--run-dir", str(run_dir), "--max-seconds",
                           str(budget - done), "--set", "log.progress=false", "train.steps=100000000",
                           f"train.threads={threads}", *extra)
        if done:
            cmd.insert(len(pin) + 4, "--resume")
        with open(out / f"{name}.log", "a") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=log, env=env, cwd=ROOT)
        done = budget
        result = out / f"{name}_{int(budget)}s.json"
        with open(out / f"{name}.log", "a") as log:
            subprocess.run(pin + gankit("eval", str(run_dir), "--ref", "mnist10k", "--metrics", "fid,classes",
                                        "--num", str(num), "--json", str(result)),
                           check=True, stdout=log, stderr=log, env=env, cwd=ROOT)
        values = json.loads(result.read_text())
        rows.append({"run": name, "config": " ".join(config), "seconds": budget, "steps": steps_of(values["info"]["samples"]),
                     "fid": values["fid"], "classes_present": values.get("classes_present"),
                     "class_kl": values.get("class_kl")})
        print(f"{name:<9} {budget:6.0f} s  step {rows[-1]['steps']:>7}  FID {values['fid']:8.2f}  "
              f"class KL {values.get('class_kl', float('nan')):.4f}", flush=True)
    return rows


def steps_of(described: str) -> int:
    """The step in `gankit eval`'s sample description: '<run> (EMA generator at step N, latent seed 0)'."""
    return int(described.split(" at step ")[1].split(",")[0])


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == name]
        label = f"{name} ({mine[0]['config'].split('/')[-1].replace('{digits}', 'DIR: no labels')})"
        ax.plot([r["seconds"] for r in mine], [r["fid"] for r in mine], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    budgets = sorted({r["seconds"] for r in rows})
    ax.set_xticks(budgets, [f"{b / 60:g} min" for b in budgets])
    ax.set_xlabel("training time on one core of a 2-core CPU (two runs side by side)")
    ax.set_ylabel("FID (mnist-cnn features, 10,000 samples; lower is better)")
    ax.set_title("gankit: sample quality against wall-clock time on the bundled MNIST digits")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS), help="default: all four")
    parser.add_argument("--budgets", type=float, nargs="+", default=[60, 120, 300, 900], help="seconds, ascending")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2: one per core)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--num", type=int, default=10_000, help="samples per evaluation (default 10000)")
    parser.add_argument("--set", dest="extra", nargs="*", default=[], help="extra --set overrides for every run")
    parser.add_argument("--out-dir", default="benchmarks/out/quality_vs_time")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--plot", help="write the FID-against-time PNG here")
    parser.add_argument("--merge", help="an earlier --json: its rows of runs not measured now are kept (with their "
                                        "date) in the JSON and the plot")
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "folder" in args.runs and not (out / "my_digits").exists():
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from own_folder import write_digits

        write_digits(out / "my_digits")
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.time()
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_segments, name, RUNS[name], args.budgets, out, args.threads,
                               i % args.jobs if args.jobs > 1 else None, args.num, args.extra)
                   for i, name in enumerate(args.runs)]
        rows = [row for f in futures for row in f.result()]
    print(f"\n{'run':<9} " + " ".join(f"{b:>8.0f}s" for b in args.budgets))
    for name in args.runs:
        fids = {r["seconds"]: r["fid"] for r in rows if r["run"] == name}
        print(f"{name:<9} " + " ".join(f"{fids[b]:9.1f}" for b in args.budgets))
    if "default" in args.runs and "seed004" in args.runs:
        for b in args.budgets:
            f = {r["run"]: r["fid"] for r in rows if r["seconds"] == b}
            print(f"FID ratio default / seed004 at {b:.0f} s: {f['default'] / f['seed004']:.3f}")
    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(), "jobs": args.jobs,
            "threads": args.threads, "wall_s": round(time.time() - t0), "extractor": "mnist-cnn",
            "num": args.num, "extra": args.extra}
    if args.merge:
        earlier = json.loads(Path(args.merge).read_text())
        kept = [{**r, "date": r.get("date", earlier["info"]["date"])} for r in earlier["rows"] if r["run"] not in args.runs]
        rows = [{**r, "date": info["date"]} for r in rows] + kept
        info["merged_from"] = {"file": args.merge, "info": earlier["info"]}
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    if args.plot:
        plot(rows, Path(args.plot))


if __name__ == "__main__":
    main()
