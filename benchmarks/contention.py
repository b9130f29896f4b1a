"""Training speed quiet and beside other work, on this machine's CPU cores: steps/s of a training run
alone, of each of two identical runs side by side (a user's second experiment), and of one run beside
a low-priority PyTorch job (`nice -n 19` in a session of its own, PyTorch's default threads: other work
on a laptop; with Linux's autogroup scheduling a niced job in another session still gets its share).

    python benchmarks/contention.py --seconds 40 --json benchmarks/results/contention.json
    python benchmarks/contention.py --runs default --variants "auto" "threads=2" "threads=2,passive"

Runs: `default` (configs/mnist_dcgan.yaml), `stylegan` (configs/mnist_stylegan.yaml) and `seed004`
(benchmarks/seed004_tutorial.py: the tutorial's plain loop). Variants: `auto` (gankit's own choice),
`threads=N` (torch.set_num_threads), `,passive` adds OMP_WAIT_POLICY=PASSIVE (OpenMP workers sleep
instead of spinning while they wait), `,spin=N` GOMP_SPINCOUNT=N (spin N times, then sleep). A gankit run's rate counts the steps between its first and last
metrics.jsonl rows, so start-up is left out; the plain loop times its own training loop.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = {"default": "configs/mnist_dcgan.yaml", "stylegan": "configs/mnist_stylegan.yaml", "seed004": None}
# the low-priority neighbour: convolutions on PyTorch's default thread count, as another training would run
NEIGHBOUR = ("import torch, time\n"
             "x = torch.randn(64, 32, 28, 28); w = torch.randn(32, 32, 3, 3)\n"
             "end = time.time() + float(__import__('sys').argv[1])\n"
             "while time.time() < end:\n"
             "    torch.nn.functional.conv2d(x, w, padding=1).sum().item()\n")


def parse_variant(text: str) -> tuple[int | None, dict[str, str]]:
    """``auto`` | ``threads=N`` with an optional ``,passive``: (threads or None, extra environment)."""
    threads, env = None, {}
    for part in text.split(","):
        if part == "passive":
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        elif part.startswith("spin="):
            env["GOMP_SPINCOUNT"] = part.split("=", 1)[1]
        elif part.startswith("threads="):
            threads = int(part.split("=", 1)[1])
        elif part != "auto":
            raise SystemExit(f"contention.py: unknown variant part {part!r} (auto, threads=N, passive, spin=N)")
    return threads, env


def command(run: str, threads: int | None, seconds: float, work: Path) -> list[str]:
    if RUNS[run] is None:
        argv = [sys.executable, str(ROOT / "benchmarks" / "seed004_tutorial.py"), "--seconds", str(seconds),
                "--json", str(work / "result.json")]
        return argv + (["--threads", str(threads)] if threads else [])
    sets = ["log.progress=false", "log.every=10", "log.sample_every=0", "log.tensorboard=false", "log.plot=false",
            "checkpoint.every=1000000", "train.steps=100000000", "health.alarms=false"]
    if threads:
        sets.append(f"train.threads={threads}")
    return [sys.executable, "-m", "gankit", "train", str(ROOT / RUNS[run]), "--run-dir", str(work / "run"),
            "--max-seconds", str(seconds), "--set", *sets]


def rate(run: str, work: Path) -> tuple[float, int]:
    """(steps/s, thread count printed) of a finished run in ``work``."""
    if RUNS[run] is None:
        result = json.loads((work / "result.json").read_text())
        return result["steps_per_s"], result["threads"]
    rows = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "seconds" in r]
    first, last = rows[0], rows[-1]
    if len(rows) < 2:  # so slow that one row was logged: count from the start, set-up included
        return last["step"] / last["seconds"], -1
    return (last["step"] - first["step"]) / (last["seconds"] - first["seconds"]), -1


def launch(run: str, threads: int | None, env_extra: dict[str, str], seconds: float, work: Path) -> subprocess.Popen:
    env = {**os.environ, **env_extra, "PYTHONPATH": str(ROOT)}
    # a session of its own, as a run started from its own terminal: Linux's autogroup scheduler then
    # shares the cores between sessions, not between threads
    return subprocess.Popen(command(run, threads, seconds, work), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=(work / "stderr.txt").open("w"), start_new_session=True)


def measure(run: str, variant: str, mode: str, seconds: float) -> list[float]:
    """Steps/s of each gankit/plain process in ``mode``: quiet, pair or lowprio."""
    threads, env_extra = parse_variant(variant)
    with tempfile.TemporaryDirectory() as tmp:
        works = [Path(tmp) / f"p{i}" for i in range(2 if mode == "pair" else 1)]
        neighbour = None
        if mode == "lowprio":
            neighbour = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", NEIGHBOUR, str(seconds + 30),
                                          "contention-neighbour"], start_new_session=True)
            time.sleep(2)  # its threads are up before the run starts
        procs = []
        for w in works:
            w.mkdir()
            procs.append(launch(run, threads, env_extra, seconds, w))
        codes = [p.wait() for p in procs]
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
        for w, code in zip(works, codes):
            if code != 0:
                raise SystemExit(f"contention.py: {run} {variant} {mode} failed:\n{(w / 'stderr.txt').read_text()[-2000:]}")
        return [rate(run, w)[0] for w in works]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS), help="what to train (default: all)")
    parser.add_argument("--variants", nargs="+", default=["auto"], help="thread settings to compare (default: auto)")
    parser.add_argument("--seconds", type=float, default=40.0, help="wall-clock budget of each run (default 40)")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()
    rows = []
    print(f"{'run':<9} {'variant':<18} {'quiet':>7} {'pair (each)':>14} {'pair/quiet':>10} {'lowprio':>8} {'low/quiet':>9}")
    for run in args.runs:
        for variant in args.variants:
            quiet = measure(run, variant, "quiet", args.seconds)[0]
            pair = measure(run, variant, "pair", args.seconds)
            low = measure(run, variant, "lowprio", args.seconds)[0]
            row = {"run": run, "config": RUNS[run] or "benchmarks/seed004_tutorial.py", "variant": variant,
                   "quiet_steps_s": round(quiet, 2), "pair_steps_s": [round(p, 2) for p in pair],
                   "pair_ratio": round(min(pair) / quiet, 3), "lowprio_steps_s": round(low, 2),
                   "lowprio_ratio": round(low / quiet, 3)}
            rows.append(row)
            print(f"{run:<9} {variant:<18} {quiet:7.1f} {pair[0]:6.1f} {pair[1]:6.1f} {row['pair_ratio']:10.2f} "
                  f"{low:8.1f} {row['lowprio_ratio']:9.2f}", flush=True)
    if args.json:
        info = {"cpu_count": os.cpu_count(), "seconds": args.seconds, "date": time.strftime("%Y-%m-%d %H:%M")}
        Path(args.json).write_text(json.dumps({"machine": info, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
